// shell: the concentrator's journal on disk — src/evidence's crash-safe Journal over the filesystem.
import { FsJournalStorage, Journal } from "../../evidence/index.ts";

/** Opens (recovering if needed) the journal in `dir`; an unclean previous stop opens a new recovery epoch. */
export async function openFileJournal(dir: string): Promise<Journal> {
  return Journal.open({ storage: await FsJournalStorage.open(dir), clockMs: () => performance.now() });
}
