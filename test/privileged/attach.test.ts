// SPDX-License-Identifier: Apache-2.0
// Attaching the datapath programs to a real veth (root; temp netns + veth):
// tcx links pinned per ifindex, idempotent re-attach, adoption after an agent
// "restart", detach cleanup, and the clsact fallback forced by an option.
// Traffic: the pod end in the netns sends pings (ARP requests, no address is
// needed on the host end) and the fixture's from_pod counts what it sees.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { attachEndpoint, attachedIfindexes, detachEndpoint, linkPinPath } from "../../agent/loader/attach.js";
import { compileDatapath } from "../../agent/loader/compile-cache.js";
import { loadDatapath, removeDatapathPins, type Datapath } from "../../agent/loader/datapath-loader.js";
import { probeTcx } from "../../agent/loader/probes.js";
import { MapName, MetricsValue, U32 } from "../../agent/generated/bpf-types.js";
import { AttachType, closeFd, ifIndex, linkInfo, mapLookup, objGet, perCpuValueSize, progId } from "../../agent/native/libbpf.js";
import { Cleanup, createNetns, createVeth, ip, nsExec } from "../helpers/netns.js";

const REPO = resolve(import.meta.dirname, "../..");
let cacheDir: string;
let objectPath: string;
const cleanup = new Cleanup();

beforeAll(async () => {
  cacheDir = mkdtempSync(join(tmpdir(), "twill-attach-test-"));
  objectPath = (
    await compileDatapath({ source: join(REPO, "test/fixtures/loader-mini.bpf.c"), includeDir: join(REPO, "bpf"), cacheDir })
  ).objectPath;
});

afterAll(() => {
  rmSync(cacheDir, { recursive: true, force: true });
});

afterEach(() => {
  cleanup.run();
});

interface Setup {
  root: string;
  dp: Datapath;
  veth: string;
  ifindex: number;
  netns: string;
}

function setup(): Setup {
  const root = `/sys/fs/bpf/twill-test-${randomBytes(5).toString("hex")}`;
  cleanup.add(`bpf root ${root}`, () => rmSync(root, { recursive: true, force: true }));
  const netns = createNetns(cleanup);
  const veth = createVeth(cleanup, { peerNetns: netns });
  ip(["link", "set", veth.name, "up"]);
  ip(["addr", "add", "10.244.254.2/24", "dev", veth.peerName], netns.name);
  ip(["link", "set", veth.peerName, "up"], netns.name);
  const dp = loadDatapath({ objectPath, bpfRoot: root, settings: { hostIdentity: 1, redirectPeer: true } });
  cleanup.add("datapath", () => dp.close());
  const ifindex = ifIndex(veth.name);
  if (ifindex === null) throw new Error(`no ifindex for ${veth.name}`);
  return { root, dp, veth: veth.name, ifindex, netns: netns.name };
}

function attach(s: Setup, forceClsact: boolean): string {
  return attachEndpoint({
    bpfRoot: s.root, ifindex: s.ifindex, ifname: s.veth, forceClsact,
    fromPodFd: s.dp.progFd("from_pod"), toPodFd: s.dp.progFd("to_pod"),
  });
}

/** Packets from_pod has counted (twill_metrics[0], summed over CPUs). */
function fromPodPackets(s: Setup): bigint {
  const raw = mapLookup(s.dp.mapFd(MapName.metrics), U32.encode(0), perCpuValueSize(MetricsValue.SIZE));
  let sum = 0n;
  for (let off = 0; raw !== null && off < raw.length; off += 16) sum += MetricsValue.decode(raw, off).packets;
  return sum;
}

function sendFromPod(s: Setup): void {
  // Nobody answers: the ARP requests for the gateway are the traffic.
  try {
    nsExec(s.netns, "busybox", ["ping", "-c", "2", "-W", "1", "10.244.254.1"]);
  } catch {
    /* no reply expected */
  }
}

function tcFilters(dev: string): string {
  return execFileSync("tc", ["filter", "show", "dev", dev, "ingress"], { encoding: "utf8" }) +
    execFileSync("tc", ["filter", "show", "dev", dev, "egress"], { encoding: "utf8" });
}

describe("tcx", () => {
  it("attaches both programs as pinned tcx links that see the pod's traffic", (ctx) => {
    if (!probeTcx().supported) ctx.skip(probeTcx().reason);
    const s = setup();
    expect(attach(s, false)).toBe("tcx");

    const want = [
      { dir: "ingress", prog: "from_pod", type: AttachType.TCX_INGRESS },
      { dir: "egress", prog: "to_pod", type: AttachType.TCX_EGRESS },
    ] as const;
    for (const w of want) {
      const link = objGet(linkPinPath(s.root, s.ifindex, w.dir));
      try {
        expect(linkInfo(link)).toMatchObject({ ifindex: s.ifindex, attachType: w.type, progId: progId(s.dp.progFd(w.prog)) });
      } finally {
        closeFd(link);
      }
    }
    const links = JSON.parse(execFileSync("bpftool", ["-j", "link", "show"], { encoding: "utf8" })) as Array<{ prog_id: number }>;
    expect(links.map((l) => l.prog_id)).toEqual(expect.arrayContaining([progId(s.dp.progFd("from_pod")), progId(s.dp.progFd("to_pod"))]));

    const before = fromPodPackets(s);
    sendFromPod(s);
    expect(fromPodPackets(s)).toBeGreaterThan(before);
  });

  it("re-attaching is idempotent and a restarted agent finds and updates the same links", (ctx) => {
    if (!probeTcx().supported) ctx.skip(probeTcx().reason);
    const s = setup();
    attach(s, false);
    const linkId = (): number => {
      const fd = objGet(linkPinPath(s.root, s.ifindex, "ingress"));
      try {
        return linkInfo(fd).id;
      } finally {
        closeFd(fd);
      }
    };
    const id = linkId();
    attach(s, false);
    expect(linkId()).toBe(id);

    // "Restart": drop the object, load again (maps reused), attach again.
    s.dp.close();
    const dp2 = loadDatapath({ objectPath, bpfRoot: s.root, settings: { hostIdentity: 1, redirectPeer: true } });
    cleanup.add("datapath 2", () => dp2.close());
    expect(attachedIfindexes(s.root)).toEqual([s.ifindex]);
    attach({ ...s, dp: dp2 }, false);
    expect(linkId()).toBe(id);
    const fd = objGet(linkPinPath(s.root, s.ifindex, "ingress"));
    try {
      expect(linkInfo(fd).progId).toBe(progId(dp2.progFd("from_pod")));
    } finally {
      closeFd(fd);
    }
  });

  it("detach removes links and pins, and a second detach is a no-op", (ctx) => {
    if (!probeTcx().supported) ctx.skip(probeTcx().reason);
    const s = setup();
    attach(s, false);
    const ids = [progId(s.dp.progFd("from_pod")), progId(s.dp.progFd("to_pod"))];
    expect(detachEndpoint(s.root, s.ifindex)).toBe(true);
    expect(existsSync(linkPinPath(s.root, s.ifindex, "ingress"))).toBe(false);
    expect(existsSync(linkPinPath(s.root, s.ifindex, "egress"))).toBe(false);
    const links = JSON.parse(execFileSync("bpftool", ["-j", "link", "show"], { encoding: "utf8" })) as Array<{ prog_id: number }>;
    expect(links.filter((l) => ids.includes(l.prog_id))).toEqual([]);
    expect(detachEndpoint(s.root, s.ifindex)).toBe(false);

    const before = fromPodPackets(s);
    sendFromPod(s);
    expect(fromPodPackets(s)).toBe(before);
  });
});

describe("clsact fallback (forced)", () => {
  it("attaches direct-action filters, re-attaches in place, and detaches", () => {
    const s = setup();
    expect(attach(s, true)).toBe("clsact");
    expect(attach(s, true)).toBe("clsact");
    const shown = execFileSync("bpftool", ["net", "show", "dev", s.veth], { encoding: "utf8" });
    expect(shown).toMatch(new RegExp(`${s.veth}\\(${s.ifindex}\\) clsact/ingress from_pod`));
    expect(shown).toMatch(new RegExp(`${s.veth}\\(${s.ifindex}\\) clsact/egress to_pod`));
    expect(tcFilters(s.veth).match(/direct-action/g)).toHaveLength(2);
    expect(existsSync(join(s.root, "links"))).toBe(false);

    const before = fromPodPackets(s);
    sendFromPod(s);
    expect(fromPodPackets(s)).toBeGreaterThan(before);

    expect(detachEndpoint(s.root, s.ifindex)).toBe(true);
    expect(tcFilters(s.veth)).not.toMatch(/from_pod|to_pod/);
    expect(detachEndpoint(s.root, s.ifindex)).toBe(false);
  });
});

describe("cleanup helper", () => {
  it("removeDatapathPins leaves nothing under the root after a tcx attach", (ctx) => {
    if (!probeTcx().supported) ctx.skip(probeTcx().reason);
    const s = setup();
    attach(s, false);
    s.dp.close();
    removeDatapathPins(s.root);
    expect(existsSync(s.root)).toBe(false);
  });
});
