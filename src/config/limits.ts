// Every size and count limit of kvstore in one place, each with its reason.
// Documented in README.md ("Limits"); change both together. Imported by the
// codecs (to refuse oversized input before allocating) and by the shells.

/** Longest key. Keys live in memory on every node and in every WAL line. */
export const keyBytesMax = 64 * 1024;

/** Longest value: large enough for documents and small blobs. */
export const valueBytesMax = 16 * 1024 * 1024;

/** Most arguments in one RESP command (DEL k1 … kN counts each key). */
export const argCountMax = 64 * 1024;

/** Longest single bulk string a client may send: a value plus slack. */
export const bulkBytesMax = valueBytesMax + 1024;

/** Largest whole command a client may send (all its arguments and framing):
 * a maximal SET fits; a DEL naming gigabytes of keys does not. */
export const commandBytesMax = 32 * 1024 * 1024;

/** Longest inline command line (the plain-text `SET k v` form). */
export const inlineBytesMax = 64 * 1024;

/** Most client connections one port accepts at once; more are refused with an
 * error reply so a connection flood cannot exhaust file descriptors. With the
 * client and read ports together a role process may hold about 8,300 sockets:
 * run nodes with `ulimit -n` above that (e.g. 16384). Control and replication
 * ports accept at most four connections per cluster node. */
export const clientConnectionsMax = 4096;

/** Bytes of WAL lines the leader puts in one replication message. */
export const replicationBatchBytesMax = 1024 * 1024;

/** Most entries in one replication message. */
export const replicationBatchEntriesMax = 4096;

/** Longest replication-protocol header line (not the entries). */
export const replicationHeaderBytesMax = 1024;

/** Longest control-plane message line between supervisors. */
export const controlMessageBytesMax = 64 * 1024;

/** Highest Raft term a node accepts from anyone. Real clusters never get near
 * it (an election every millisecond would take 35 years), and a forged or
 * corrupt message with a term near 2^53 would otherwise leave every later
 * campaign with a term no node can represent exactly. */
export const termMax = 2 ** 40;

/** Largest step up in term a node takes from one message. With pre-vote,
 * terms rise only through real elections, so a node that comes back after
 * being away never trails by anything near this; a message that jumps further
 * is damaged or forged, and taking it would move every node toward termMax. */
export const termJumpMax = 2 ** 20;

/** Default `--snapshot-entries`: a node writes a snapshot of its state once
 * its WAL holds this many entries past the last one. Bounds the WAL, the
 * in-memory log and a restart's replay; etcd's default is the same order. */
export const snapshotEntriesDefault = 100_000;

/** Default `--snapshot-wal-bytes`: or once its WAL is this large (large values). */
export const snapshotBytesDefault = 64 * 1024 * 1024;

/** Bytes of snapshot file in one replication message to a follower. */
export const snapshotChunkBytes = 1024 * 1024;
