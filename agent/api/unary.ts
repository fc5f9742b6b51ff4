// SPDX-License-Identifier: Apache-2.0
// Adapter from "async function of the request" to a grpc-js unary handler,
// so every handler answers exactly once and every failure goes through
// errors.ts. API: unary(method, fn).
import type * as grpc from "@grpc/grpc-js";
import { toServiceError } from "./errors.js";

/**
 * Wrap fn as a unary handler. method names the RPC in error messages
 * ("endpoint.create"); sync throws and rejections are both mapped.
 */
export function unary<Req, Res>(method: string, fn: (req: Req) => Promise<Res> | Res): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request))
      .then(
        (res) => callback(null, res),
        (e: unknown) => callback(toServiceError(method, e)),
      );
  };
}
