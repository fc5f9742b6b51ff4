// SPDX-License-Identifier: Apache-2.0
// twill.v1.Observer handler: Observe, a server stream of flows and
// lost-event notices read from the backend's FlowSource.
//
// Back-pressure: when grpc-js's write buffer is full (write() returns
// false) we stop reading the subscription until 'drain'; meanwhile the
// subscription's own bounded queue absorbs new flows and counts what it
// drops, which reaches the client as a LostEvents message. So a slow client
// costs bounded memory and never slows the agent.
// API: observerHandlers(backend), flowToProto(flow).
import * as grpc from "@grpc/grpc-js";
import type { Flow as ProtoFlow } from "../generated/proto/twill/v1/Flow.js";
import type { FlowPeer as ProtoFlowPeer } from "../generated/proto/twill/v1/FlowPeer.js";
import type { ObserveRequest__Output } from "../generated/proto/twill/v1/ObserveRequest.js";
import type { ObserveResponse } from "../generated/proto/twill/v1/ObserveResponse.js";
import type { ObserverHandlers } from "../generated/proto/twill/v1/Observer.js";
import { formatFlowTime, type Flow, type FlowPeer } from "../monitor/flow.js";
import type { FlowStreamItem } from "../monitor/flow-buffer.js";
import type { AgentBackend } from "./agent-state.js";
import { toServiceError } from "./errors.js";
import { directionToProto } from "./policies-service.js";
import { protocolEnum, validateObserve } from "./validate.js";

function peerToProto(p: FlowPeer): ProtoFlowPeer {
  return { ip: p.ip, port: p.port, identity: p.identity, namespace: p.namespace, pod: p.pod, labels: { ...p.labels } };
}

/** Domain flow -> proto message. */
export function flowToProto(f: Flow): ProtoFlow {
  return {
    time: formatFlowTime(f.timeNs),
    type: f.type,
    source: peerToProto(f.source),
    destination: peerToProto(f.destination),
    family: f.family === 4 ? "IP_FAMILY_IPV4" : "IP_FAMILY_IPV6",
    protocol: protocolEnum(f.protocol),
    direction: directionToProto(f.direction),
    verdict: f.verdict === "forwarded" ? "VERDICT_FORWARDED" : "VERDICT_DROPPED",
    dropReason: f.dropReason ?? "",
    ruleRef: f.ruleRef,
    length: f.lengthBytes,
    ifindex: f.ifindex,
  };
}

function itemToProto(item: FlowStreamItem): ObserveResponse {
  if (item.kind === "flow") return { flow: flowToProto(item.flow) };
  return {
    lost: {
      count: String(item.count),
      source: item.source === "client" ? "LOST_SOURCE_CLIENT" : "LOST_SOURCE_RING_BUFFER",
    },
  };
}

/** Handlers of the Observer service over backend. */
export function observerHandlers(backend: AgentBackend): ObserverHandlers {
  return {
    Observe: (call: grpc.ServerWritableStream<ObserveRequest__Output, ObserveResponse>) => {
      let opts: ReturnType<typeof validateObserve>;
      try {
        opts = validateObserve(call.request);
      } catch (e: unknown) {
        call.emit("error", toServiceError("observe", e));
        return;
      }
      const sub = backend.flows.open(opts.filter, { last: opts.last, follow: opts.follow });
      // The client went away (cancel, ctrl-C): end the iteration below.
      call.on("cancelled", () => sub.close());
      call.on("close", () => sub.close());
      void (async () => {
        try {
          for await (const item of sub) {
            if (call.cancelled) break;
            if (!call.write(itemToProto(item))) {
              await new Promise<void>((resolve) => {
                const done = (): void => {
                  call.off("drain", done);
                  call.off("cancelled", done);
                  resolve();
                };
                call.on("drain", done);
                call.on("cancelled", done);
              });
            }
          }
          if (!call.cancelled) call.end();
        } catch (e: unknown) {
          if (!call.cancelled) call.emit("error", toServiceError("observe", e));
        } finally {
          sub.close();
        }
      })();
    },
  };
}
