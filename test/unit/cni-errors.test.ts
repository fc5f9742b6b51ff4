// SPDX-License-Identifier: Apache-2.0
import { describe, expect, it } from "vitest";
import { CniError, CniErrorCode, errorJson, toCniError } from "../../cni/errors.js";

describe("errorJson", () => {
  it.each([
    {
      name: "a CniError with details",
      err: new CniError(CniErrorCode.InvalidEnvironment, "invalid CNI_IFNAME: is empty", "set CNI_IFNAME"),
      want: { cniVersion: "1.0.0", code: 4, msg: "invalid CNI_IFNAME: is empty", details: "set CNI_IFNAME" },
    },
    {
      name: "a CniError whose cause becomes details",
      err: new CniError(CniErrorCode.TryAgainLater, "reach agent at /s", null, { cause: new Error("connect ENOENT /s") }),
      want: { cniVersion: "1.0.0", code: 11, msg: "reach agent at /s", details: "connect ENOENT /s" },
    },
    {
      name: "a CniError without details",
      err: new CniError(CniErrorCode.IoFailure, "write x"),
      want: { cniVersion: "1.0.0", code: 5, msg: "write x" },
    },
  ])("renders $name", ({ err, want }) => {
    expect(errorJson(err, "1.0.0")).toEqual(want);
  });

  it("maps an unforeseen Error to a plugin code >= 100 keeping its message", () => {
    const e = toCniError(new TypeError("boom"));
    expect(e.code).toBeGreaterThanOrEqual(100);
    expect(errorJson(e, "1.1.0")).toMatchObject({ msg: "boom", cniVersion: "1.1.0" });
  });

  it("maps a thrown string", () => {
    expect(toCniError("nope").message).toContain("nope");
  });
});
