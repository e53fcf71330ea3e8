/**
 * Progress of long work for the scripts (`deno task bench`, `regress`, `demo`): nothing for the
 * first second (short runs stay quiet), then an updating line on a terminal, or plain lines
 * at most every few seconds otherwise (CI logs). Written to stderr, so stdout stays the
 * script's result. No library file imports this.
 *
 * @module
 */

/** A running progress report. */
export interface Progress {
  /** `done` of `total` steps finished; `note` says what runs now. */
  update(done: number, note?: string): void;
  /** Erases the terminal line (call before printing a result line); plain output: nothing. */
  clear(): void;
  /** The work ended: clears the terminal line (plain output prints a last line if any). */
  finish(note?: string): void;
}

/** Options of {@link progress} (for tests: where to write, whether it is a terminal, a clock). */
export interface ProgressOptions {
  write?: (text: string) => void;
  terminal?: boolean;
  now?: () => number;
  /** Quiet for this long (ms; default 1000). */
  quietMs?: number;
  /** Plain lines at most this often (ms; default 5000). */
  plainEveryMs?: number;
}

/** A progress report for `label` over `total` steps. */
export function progress(label: string, total: number, opts: ProgressOptions = {}): Progress {
  const encoder = new TextEncoder();
  const write = opts.write ?? ((s: string) => void Deno.stderr.writeSync(encoder.encode(s)));
  const terminal = opts.terminal ?? Deno.stderr.isTerminal();
  const now = opts.now ?? (() => performance.now());
  const quietMs = opts.quietMs ?? 1000;
  const plainEveryMs = opts.plainEveryMs ?? 5000;
  const start = now();
  let last = -Infinity;
  let shown = false;
  const line = (done: number, note?: string) => {
    const pct = total > 0 ? ` (${Math.floor((100 * done) / total)} %)` : "";
    const secs = ((now() - start) / 1000).toFixed(0);
    return `${label}: ${done}/${total}${pct}, ${secs} s${note ? ` — ${note}` : ""}`;
  };
  return {
    update(done, note) {
      const t = now();
      if (t - start < quietMs) return;
      if (terminal) {
        if (t - last < 100) return; // a redraw every 0.1 s is plenty
        write(`\r\x1b[K${line(done, note)}`);
      } else {
        if (t - last < plainEveryMs) return;
        write(`${line(done, note)}\n`);
      }
      last = t;
      shown = true;
    },
    clear() {
      if (terminal && shown) write("\r\x1b[K");
    },
    finish(note) {
      if (!shown) return;
      if (terminal) write("\r\x1b[K");
      else write(`${line(total, note ?? "done")}\n`);
    },
  };
}
