// The independent watchdog the bootloader arms before it jumps to an image (seed 000: the new code must
// "kick the dog" within its window, else the watchdog resets the meter and the bootloader rolls back).
// Pure: the caller passes the meter's time; the shell (runtime/, the lab) turns an expiry into a reset.

/** Window the running code has between kicks; a kick after it is too late (the reset already fired). */
export const WATCHDOG_WINDOW_MS = 8_000;

export type WatchdogState = "DISARMED" | "RUNNING" | "EXPIRED";

export class Watchdog {
  private deadlineMs: number | null = null;
  private expired = false;

  constructor(readonly windowMs = WATCHDOG_WINDOW_MS) {
    if (!Number.isSafeInteger(windowMs) || windowMs <= 0)
      throw new RangeError(`watchdog window must be a positive integer of ms, got ${windowMs}`);
  }

  /** The bootloader starts the watchdog as it jumps to the image. */
  arm(nowMs: number): void {
    this.deadlineMs = nowMs + this.windowMs;
    this.expired = false;
  }

  disarm(): void {
    this.deadlineMs = null;
    this.expired = false;
  }

  /** true when the kick came within the window (the window restarts); false when it was too late. */
  kick(nowMs: number): boolean {
    if (this.state(nowMs) !== "RUNNING") return false;
    this.deadlineMs = nowMs + this.windowMs;
    return true;
  }

  /** EXPIRED once the window passed without a kick: the caller resets the meter (boot("watchdog")). */
  state(nowMs: number): WatchdogState {
    if (this.deadlineMs === null) return "DISARMED";
    if (this.expired || nowMs > this.deadlineMs) this.expired = true;
    return this.expired ? "EXPIRED" : "RUNNING";
  }
}
