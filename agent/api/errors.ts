// SPDX-License-Identifier: Apache-2.0
// The one mapping from typed agent errors to gRPC status (style (d): one
// mapping per edge). Handlers catch everything the backend throws and pass
// it to toServiceError(); nothing else in api/ picks status codes for
// backend failures.
//
// API: toServiceError(method, e) -> grpc.ServiceError, statusCodeFor(e),
// RequestValidationError (thrown by validate.ts).
import * as grpc from "@grpc/grpc-js";
import { IpamConflictError, IpamExhaustedError } from "../ipam/allocator.js";
import {
  AlreadyExistsError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
} from "./agent-state.js";

/** A request failed validation; the message names the method and field. */
export class RequestValidationError extends Error {
  constructor(readonly method: string, readonly field: string, detail: string) {
    super(`${method}: ${field}: ${detail}`);
    this.name = "RequestValidationError";
  }
}

/** The gRPC status code for an error thrown by validation or the backend. */
export function statusCodeFor(e: unknown): grpc.status {
  if (e instanceof RequestValidationError || e instanceof InvalidArgumentError) return grpc.status.INVALID_ARGUMENT;
  if (e instanceof NotFoundError) return grpc.status.NOT_FOUND;
  if (e instanceof AlreadyExistsError || e instanceof IpamConflictError) return grpc.status.ALREADY_EXISTS;
  if (e instanceof IpamExhaustedError || e instanceof ResourceExhaustedError) return grpc.status.RESOURCE_EXHAUSTED;
  if (e instanceof UnavailableError) return grpc.status.UNAVAILABLE;
  return grpc.status.INTERNAL;
}

/**
 * Build the error a handler returns. Validation messages already name the
 * method; backend messages get it prefixed ("endpoint.get: find endpoint:
 * x not found") so the CLI can print details as they are.
 */
export function toServiceError(method: string, e: unknown): Partial<grpc.StatusObject> {
  const code = statusCodeFor(e);
  let message: string;
  if (e instanceof RequestValidationError) message = e.message;
  else if (e instanceof Error) message = `${method}: ${e.message}`;
  else message = `${method}: ${String(e)}`;
  return { code, details: message, metadata: new grpc.Metadata() };
}
