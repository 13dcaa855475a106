import type { Role } from "../api.ts";

export interface PageContext {
  readonly role: Role;
  readonly main: HTMLElement;
  readonly params: URLSearchParams;
}

/** Runs `work` unless the page was left meanwhile; pages return `leave` as their cleanup. */
export function pageLife(): { alive: () => boolean; leave: () => void; add: (stop: () => void) => void } {
  let alive = true;
  const stops: (() => void)[] = [];
  return {
    alive: () => alive,
    add: (stop) => stops.push(stop),
    leave: () => {
      alive = false;
      for (const stop of stops) stop();
    },
  };
}
