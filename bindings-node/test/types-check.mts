// Compile-time checks of index.d.ts (tsc --noEmit -p test/tsconfig.json).
// Every `@ts-expect-error` line must be an error, or tsc fails.
import memwatch, {
  MemoryWatcher,
  create,
  pageSize,
  allocPageAligned,
  signalHandlerInstalled,
  BACKENDS,
  Store,
  type Backend,
  type ChangeEvent,
  type ChangedRange,
  type Where,
  type WatcherOptions,
  type WatcherStats,
  type WatchTarget,
} from 'memwatch';

const options: WatcherOptions = { backend: 'poll', pollIntervalMs: 10, maxValueBytes: 64, snapshots: true };
const w: MemoryWatcher = create(options);
const w2: MemoryWatcher = new MemoryWatcher();
const w3: MemoryWatcher = MemoryWatcher.create({ backend: 'protect' });
const w4: MemoryWatcher = memwatch.create();

const targets: WatchTarget[] = [
  Buffer.alloc(4),
  new Uint8Array(4),
  new Float64Array(2),
  new BigInt64Array(1),
  new DataView(new ArrayBuffer(8)),
  new ArrayBuffer(8),
  new SharedArrayBuffer(8),
  allocPageAligned(pageSize()),
];
const ids: number[] = targets.map((t, i) => w.watch(t, `t${i}`, i % 2 ? 'meta' : null));
w.watch(Buffer.alloc(1));
const removed: boolean = w.unwatch(ids[0]);

w.setCallback((e: ChangeEvent) => {
  const name: string = e.variableName;
  const ts: bigint = e.timestampNs;
  const seq: number = e.seq;
  const old: Buffer | null = e.oldValue;
  const now: Buffer | null = e.newValue;
  const preview: Buffer = e.newPreview;
  const ranges: ChangedRange[] = e.changedRanges;
  const where: Where = e.where;
  const tid: number | null = where.threadId;
  const ip: bigint | null = where.faultIp;
  const meta: string | null = e.metadata;
  void [name, ts, seq, old, now, preview, ranges, tid, ip, meta];
});
w.setCallback(null);
w.on('change', (e) => {
  const r: number = e.changedRanges[0].offset + e.changedRanges[0].length;
  void r;
});
w.once('error', (err: unknown) => void err);
w.on('close', () => undefined);
w.off('change', () => undefined);

w.setValueStore(`types-check-${process.pid}`, 1 << 20);
w.setValueStore(`types-check-${process.pid}`);
const storeName: string | null = w.valueStore;
w.setValueStore(null);
const store: Store = Store.open(`types-check-${process.pid}`);
const keyOld: string | null = w.checkChanges()[0]?.storageKeyOld ?? null;
const value: Buffer | null = keyOld === null ? null : store.get(keyOld);
const byBytes: Buffer | null = store.get(new Uint8Array([0x6b]));
const storeClosed: boolean = store.closed;
const sName: string = store.name;
store.close();
const unlinked: boolean = Store.unlink(`types-check-${process.pid}`);
void [storeName, value, byBytes, storeClosed, sName, unlinked];

const events: ChangeEvent[] = w.checkChanges();
const stats: WatcherStats = w.getStats();
const backend: string = stats.backend;
const pending: number = stats.pendingEvents;
const closed: boolean = w.closed;
const installed: boolean = signalHandlerInstalled();
const names: readonly Backend[] = BACKENDS;

async function iterate(): Promise<void> {
  for await (const e of w.changes()) {
    const n: number = e.howBig;
    void n;
    break;
  }
}
void iterate();
w.close();
w2.close();
w3.close();
w4.close();
void [removed, events, backend, pending, closed, installed, names];

// @ts-expect-error a number is not a watch target
w.watch(42);
// @ts-expect-error the name is a string
w.watch(Buffer.alloc(1), 5);
// @ts-expect-error unknown backend
create({ backend: 'fast' });
// @ts-expect-error unknown option
create({ bakend: 'poll' });
// @ts-expect-error timestampNs is a bigint
const wrongTs: number = events[0].timestampNs;
// @ts-expect-error oldValue may be null
const wrongOld: Buffer = events[0].oldValue;
// @ts-expect-error snake_case fields do not exist
void events[0].variable_name;
// @ts-expect-error 'closed' is read-only
w.closed = true;
void [wrongTs, wrongOld];
// @ts-expect-error Store has no public constructor: use Store.open
new Store();
// @ts-expect-error get() may return null
const wrongValue: Buffer = store.get('k');
// @ts-expect-error the store name is a string or null
w.setValueStore(42);
// @ts-expect-error 'valueStore' is read-only
w.valueStore = 'x';
void wrongValue;
