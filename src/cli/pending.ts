// shell: commands whose role has not landed yet say so plainly and exit 2 (usage/unavailable), never 0.
export function notYetAvailable(command: string, issue: number): never {
  process.stderr.write(
    `amiproof ${command}: not available in this build yet (tracked in issue ${issue}); see README.md\n`,
  );
  process.exit(2);
}
