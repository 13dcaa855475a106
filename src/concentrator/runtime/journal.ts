// shell: the concentrator's journal on disk — src/evidence's crash-safe Journal (group commit with
// fdatasync, commit frames, checkpoints, recovery epochs) on the real filesystem, behind the pipeline's
// CommitJournal port.
import { FsJournalStorage, Journal } from "../../evidence/index.ts";
import type { CommitJournal } from "../core/ports.ts";

export async function openFileJournal(dir: string): Promise<CommitJournal & { close(): Promise<void> }> {
  return Journal.open({ storage: await FsJournalStorage.open(dir), clockMs: () => performance.now() });
}
