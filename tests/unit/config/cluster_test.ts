// Unit tests of src/config/cluster.ts: port formula, default cluster, quorumSize, parseCluster.

import assert from "node:assert/strict";
import {
  type Cluster,
  defaultCluster,
  defaultNodeCount,
  defaultPorts,
  findNode,
  loadCluster,
  parseCluster,
  quorumSize,
} from "../../../src/config/cluster.ts";

function parsed(text: string): Cluster {
  const r = parseCluster(text);
  assert.ok(r.ok, r.ok ? "" : r.error);
  return r.value;
}

function refused(text: string): string {
  const r = parseCluster(text);
  assert.equal(r.ok, false, `expected ${text} to be refused`);
  return r.ok ? "" : r.error;
}

Deno.test("defaultPorts follows the request's table for nodes 1 to 4", () => {
  assert.deepEqual(
    [1, 2, 3, 4].map(defaultPorts),
    [
      { clientPort: 7001, replicationPort: 7002, readPort: 7101, controlPort: 8001 },
      { clientPort: 7003, replicationPort: 7004, readPort: 7102, controlPort: 8002 },
      { clientPort: 7005, replicationPort: 7006, readPort: 7103, controlPort: 8003 },
      { clientPort: 7007, replicationPort: 7008, readPort: 7104, controlPort: 8004 },
    ],
  );
});

Deno.test("defaultCluster is four nodes on 127.0.0.1 with the default ports", () => {
  const cluster = defaultCluster();
  assert.equal(defaultNodeCount, 4);
  assert.equal(cluster.nodes.length, 4);
  for (const [i, node] of cluster.nodes.entries()) {
    const n = i + 1;
    assert.deepEqual(node, {
      id: n,
      host: "127.0.0.1",
      listenHost: "127.0.0.1",
      ...defaultPorts(n),
    });
  }
  assert.equal(cluster.nodes[3]!.clientPort, 7007);
  assert.equal(cluster.nodes[3]!.replicationPort, 7008);
  assert.equal(cluster.nodes[3]!.readPort, 7104);
  assert.equal(cluster.nodes[3]!.controlPort, 8004);
});

Deno.test("the default cluster uses sixteen distinct ports", () => {
  const ports = defaultCluster().nodes.flatMap((n) => [
    n.clientPort,
    n.replicationPort,
    n.readPort,
    n.controlPort,
  ]);
  assert.equal(new Set(ports).size, 16);
});

Deno.test("quorum of 4 needs 3: quorumSize(4) === 3", () => {
  assert.equal(quorumSize(4), 3);
  assert.deepEqual([1, 2, 3, 5].map(quorumSize), [1, 2, 2, 3]);
});

Deno.test("findNode finds a node by id, or nothing", () => {
  const cluster = defaultCluster();
  assert.equal(findNode(cluster, 3)?.clientPort, 7005);
  assert.equal(findNode(cluster, 5), undefined);
});

Deno.test("loadCluster without a path is the default cluster", async () => {
  assert.deepEqual(await loadCluster(undefined), { ok: true, value: defaultCluster() });
});

// ---------------------------------------------------------------- parseCluster

Deno.test("parseCluster: ports default to the formula for each node's id", () => {
  const cluster = parsed(JSON.stringify({
    nodes: [
      { id: 1, host: "10.0.0.1" },
      { id: 2, host: "10.0.0.2" },
      { id: 3, host: "10.0.0.3" },
      { id: 4, host: "10.0.0.4" },
    ],
  }));
  assert.equal(cluster.nodes.length, 4);
  for (const [i, node] of cluster.nodes.entries()) {
    assert.deepEqual(node, {
      id: i + 1,
      host: `10.0.0.${i + 1}`,
      listenHost: "0.0.0.0",
      ...defaultPorts(i + 1),
    });
  }
});

Deno.test("parseCluster: any port may be overridden", () => {
  const cluster = parsed(JSON.stringify({
    nodes: [{
      id: 2,
      host: "10.0.0.2",
      clientPort: 9001,
      replicationPort: 9002,
      readPort: 9003,
      controlPort: 9004,
    }],
  }));
  assert.deepEqual(cluster.nodes[0], {
    id: 2,
    host: "10.0.0.2",
    listenHost: "0.0.0.0",
    clientPort: 9001,
    replicationPort: 9002,
    readPort: 9003,
    controlPort: 9004,
  });
});

Deno.test("parseCluster: listenHost is the host itself for loopback hosts, 0.0.0.0 otherwise, or as given", () => {
  const cluster = parsed(JSON.stringify({
    nodes: [
      { id: 1, host: "127.0.0.5" },
      { id: 2, host: "localhost" },
      { id: 3, host: "::1" },
      { id: 4, host: "db4.example.org" },
      { id: 5, host: "10.0.0.5", listenHost: "10.0.0.5" },
    ],
  }));
  assert.deepEqual(cluster.nodes.map((n) => n.listenHost), [
    "127.0.0.5",
    "localhost",
    "::1",
    "0.0.0.0",
    "10.0.0.5",
  ]);
});

Deno.test("parseCluster: nodes come back sorted by id", () => {
  const cluster = parsed(JSON.stringify({
    nodes: [{ id: 3, host: "c" }, { id: 1, host: "a" }, { id: 2, host: "b" }],
  }));
  assert.deepEqual(cluster.nodes.map((n) => n.id), [1, 2, 3]);
  assert.deepEqual(cluster.nodes.map((n) => n.host), ["a", "b", "c"]);
});

Deno.test("parseCluster: unknown extra fields are ignored", () => {
  const cluster = parsed(JSON.stringify({ nodes: [{ id: 1, host: "a", zone: "eu" }], note: "x" }));
  assert.equal(cluster.nodes.length, 1);
});

Deno.test("parseCluster: text that is not JSON is refused with the parser's reason", () => {
  assert.match(refused("{ nodes: "), /^Cluster file is not valid JSON: /);
});

Deno.test("parseCluster: a file without a nodes array is refused", () => {
  for (const text of ["null", "[]", "42", '"x"', "{}", '{"nodes": {}}', '{"nodes": "1"}']) {
    assert.equal(refused(text), 'Cluster file needs a "nodes" array', text);
  }
});

Deno.test("parseCluster: an empty nodes array is refused", () => {
  assert.equal(refused('{"nodes": []}'), "Cluster file lists no nodes");
});

Deno.test("parseCluster: a node that is not an object is refused, naming its position", () => {
  assert.equal(
    refused('{"nodes": [{"id": 1, "host": "a"}, 7]}'),
    "Cluster node #2 is not an object",
  );
  assert.equal(refused('{"nodes": [null]}'), "Cluster node #1 is not an object");
});

Deno.test("parseCluster: ids must be integers from 1 to 1000", () => {
  for (const id of ["0", "-1", "1.5", '"1"', "1001", "null"]) {
    assert.match(
      refused(`{"nodes": [{"id": ${id}, "host": "a"}]}`),
      /^Cluster node #1 has a bad id: /,
      id,
    );
  }
  assert.equal(refused('{"nodes": [{"host": "a"}]}'), "Cluster node #1 has a bad id: undefined");
  assert.equal(
    refused('{"nodes": [{"id": "2", "host": "a"}]}'),
    'Cluster node #1 has a bad id: "2"',
  );
});

Deno.test("parseCluster: a repeated id is refused", () => {
  assert.equal(
    refused('{"nodes": [{"id": 1, "host": "a"}, {"id": 1, "host": "b"}]}'),
    "Cluster node id 1 appears twice",
  );
});

Deno.test("parseCluster: a missing, empty or whitespace-containing host is refused", () => {
  assert.equal(refused('{"nodes": [{"id": 2}]}'), "Cluster node 2 has a bad host: undefined");
  assert.equal(refused('{"nodes": [{"id": 2, "host": ""}]}'), 'Cluster node 2 has a bad host: ""');
  assert.equal(
    refused('{"nodes": [{"id": 2, "host": "a b"}]}'),
    'Cluster node 2 has a bad host: "a b"',
  );
  assert.match(refused('{"nodes": [{"id": 2, "host": 5}]}'), /bad host: 5$/);
});

Deno.test("parseCluster: a port outside 1..65535 or not an integer is refused, naming the field", () => {
  for (
    const [field, value] of [
      ["clientPort", "0"],
      ["replicationPort", "65536"],
      ["readPort", "80.5"],
      ["controlPort", '"8001"'],
      ["clientPort", "null"],
    ] as const
  ) {
    assert.equal(
      refused(`{"nodes": [{"id": 1, "host": "a", "${field}": ${value}}]}`),
      `Cluster node 1 has a bad ${field}: ${value}`,
    );
  }
  assert.ok(parseCluster('{"nodes": [{"id": 1, "host": "a", "clientPort": 65535}]}').ok);
  assert.ok(parseCluster('{"nodes": [{"id": 1, "host": "a", "clientPort": 1}]}').ok);
});

Deno.test("parseCluster: an empty or non-string listenHost is refused", () => {
  assert.equal(
    refused('{"nodes": [{"id": 1, "host": "a", "listenHost": ""}]}'),
    'Cluster node 1 has a bad listenHost: ""',
  );
  assert.equal(
    refused('{"nodes": [{"id": 1, "host": "a", "listenHost": 0}]}'),
    "Cluster node 1 has a bad listenHost: 0",
  );
});

Deno.test("parseCluster: one host:port used twice is refused, within a node or across nodes", () => {
  assert.equal(
    refused('{"nodes": [{"id": 1, "host": "a", "clientPort": 8001}]}'),
    "Cluster port a:8001 is used twice",
  );
  assert.equal(
    refused('{"nodes": [{"id": 1, "host": "a"}, {"id": 2, "host": "a", "clientPort": 7001}]}'),
    "Cluster port a:7001 is used twice",
  );
  // The same port on different hosts is fine: that is the VPS layout.
  assert.ok(
    parseCluster('{"nodes": [{"id": 1, "host": "a"}, {"id": 2, "host": "b", "clientPort": 7001}]}')
      .ok,
  );
});

Deno.test("parseCluster: the default four nodes written out parse back to defaultCluster()", () => {
  const text = JSON.stringify({
    nodes: defaultCluster().nodes.map((n) => ({ id: n.id, host: n.host })),
  });
  assert.deepEqual(parsed(text), defaultCluster());
});

Deno.test("parseCluster: an id whose formula ports collide with each other is refused, naming the clash", () => {
  // The request's formula only spreads small ids apart: node 100's read port
  // (7100 + 100) is its replication port (7000 + 2·100).
  assert.equal(
    refused('{"nodes": [{"id": 100, "host": "a"}]}'),
    "Cluster port a:7200 is used twice",
  );
  assert.ok(parseCluster('{"nodes": [{"id": 100, "host": "a", "readPort": 9100}]}').ok);
});
