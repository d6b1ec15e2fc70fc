// Every timing constant of kvstore, with its reason. The supervisor's core
// counts in ticks of `tickMs`; everything else is in milliseconds.

/** Supervisor clock resolution: fine enough for timeouts, cheap to run. */
export const tickMs = 10;

/** Leader supervisor → peers. Several per election timeout so one lost or
 * late heartbeat does not trigger an election. */
export const heartbeatIntervalMs = 100;

/** Randomized per election (Raft §5.2) to split votes rarely. Loaded 2-core
 * machines stall event loops for tens of ms, so the floor stays well above
 * the heartbeat interval; failover time is about this plus one round trip. */
export const electionTimeoutMsMin = 500;
export const electionTimeoutMsMax = 900;

/** Leader role → followers when idle, carrying the commit index. */
export const replicationHeartbeatMs = 50;

/** A write or linearizable read not done by then gets -TRYAGAIN (the write
 * may still commit later: its outcome is unknown to the client). */
export const requestTimeoutMs = 5000;

/** How long a supervisor waits for its role process to confirm a fence
 * before killing it: either way, the old role can no longer acknowledge. */
export const fenceTimeoutMs = 1000;
/** The same wait for a role process that has not reported ready yet: it is
 * still loading its WAL, has acknowledged nothing, and answers the fence when
 * its event loop is next free. Loading a large WAL on a busy machine stalls
 * that loop for seconds; killing the role then only restarts the load, and a
 * whole-cluster restart (every election step fences) could stall for good. */
export const fenceTimeoutMsWhileStarting = 15_000;

/** The supervisor pings its role process this often once it is ready, and
 * kills it (then restarts it; a leader's node steps down) when no answer came
 * for `roleUnresponsiveMs`: a frozen or wedged leader must not hold the
 * cluster without writes. Well above GC pauses and scheduling stalls, and
 * above the ~1.5 s a loaded follower was seen to spend on one 16 MiB value
 * of binary data (escaped to a 64 MiB WAL line). */
export const rolePingIntervalMs = 250;
export const roleUnresponsiveMs = 3000;
/** The fence wait (see fenceTimeoutMs) for a ready follower role. Killing
 * one that is merely slow (a major GC after loading a large log, on a machine
 * short of CPU) buys nothing: a follower fenced late has acknowledged nothing
 * of the new term, and the vote simply waits. But it costs a full reload,
 * during which the node cannot vote quickly either. So a follower gets as
 * long as a ping. */
export const fenceTimeoutMsFollower = roleUnresponsiveMs;

/** Role process restarts after a crash: first delay, cap, and the count in
 * `crashLoopWindowMs` that we report as a crash loop. */
export const restartBackoffMsMin = 100;
export const restartBackoffMsMax = 5000;
export const crashLoopWindowMs = 30_000;
export const crashLoopCount = 5;

/** Follower role reconnect backoff to the leader's replication port. */
export const reconnectBackoffMsMin = 50;
export const reconnectBackoffMsMax = 1000;

/** Supervisor → peer control connections: reconnect delay cap. */
export const peerReconnectMsMax = 1000;

/** Follower read staleness bound (`--max-staleness-ms`): a follower that has
 * not been brought up to date by a leader for longer than this answers reads
 * with -STALE instead of from its copy. Above a normal failover (about 1 s:
 * election timeout plus a round trip) so reads go on across one, yet small
 * enough that a cut-off follower stops serving old data within seconds. */
export const maxStalenessMsDefault = 2000;
/** Below two replication heartbeats a follower would turn stale between two
 * of them under ordinary scheduling delays. */
export const maxStalenessMsMin = 100;
/** An hour: beyond it the bound promises nothing worth a number. */
export const maxStalenessMsMax = 3_600_000;
