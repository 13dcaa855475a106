import type { Figures, PredicateResult, Scenario, ScenarioContext } from "../scenario.ts";
import { coreFigures, corePredicates, type HeadendView, readHeadend } from "./predicates.ts";
import { type LoopOptions, LoopWorld } from "./world.ts";

// One shape for every in-loop scenario: build the world, schedule the faults, run the virtual window,
// settle (faults end, backlog drains), read the head-end back, judge. A scenario file only says which
// faults, for how long, and which predicates it adds to the core set.

export interface LoopScenarioDefinition {
  readonly name: string;
  readonly description: string;
  readonly source: string;
  readonly defaultMeters: number;
  readonly safeguards: readonly string[];
  readonly startMs: number;
  /** Virtual time under faults (the settling phase comes after). */
  readonly durationMs: number;
  readonly options?: (ctx: ScenarioContext) => Omit<LoopOptions, "ctx" | "startMs">;
  /** Schedules the faults on world.sim (and may keep its own notes for `extra`). */
  faults(world: LoopWorld, ctx: ScenarioContext): void;
  /** Predicates beyond the core set. */
  extra?(world: LoopWorld, view: HeadendView): PredicateResult[] | Promise<PredicateResult[]>;
  figures?(world: LoopWorld, view: HeadendView): Figures;
}

export function loopScenario(def: LoopScenarioDefinition): Scenario {
  return {
    name: def.name,
    description: def.description,
    source: def.source,
    defaultMeters: def.defaultMeters,
    safeguards: def.safeguards,
    inLoop: true,
    async run(ctx) {
      const world = await LoopWorld.create({ ctx, startMs: def.startMs, ...def.options?.(ctx) });
      try {
        def.faults(world, ctx);
        await world.runUntil(def.startMs + def.durationMs, (f) => ctx.progress(f * 0.9, "virtual time"));
        ctx.progress(0.9, "settling");
        const settled = await world.settle();
        const view = await readHeadend(world);
        if (!world.concentratorDown) ctx.evidence?.(world.dcu.status());
        const predicates = [
          ...(await corePredicates(world, view, settled)),
          ...((await def.extra?.(world, view)) ?? []),
        ];
        ctx.progress(1, "done");
        return {
          predicates,
          figures: {
            ...coreFigures(world, view),
            ...def.figures?.(world, view),
            virtual_s: Math.round((world.nowMs - def.startMs) / 1000),
          },
        };
      } finally {
        await world.close();
      }
    },
  };
}
