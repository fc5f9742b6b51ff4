// SPDX-License-Identifier: Apache-2.0
// Public surface of agent/netlink: rtnetlink links, addresses, routes,
// neighbours, netns switching and sysctls, all synchronous. Import from here.
export { NetlinkSocket, type NetlinkSocketOptions } from "./socket.js";
export { withNetns, openNetns, sameNetns, CURRENT_NETNS_PATH, type NetnsHandle } from "./netns.js";
export {
  createVethPair, getLink, findLink, listLinks, setLinkUp, setLinkDown, setLinkMtu, setLinkMac, renameLink, deleteLink,
  type LinkInfo, type OperState, type PeerNetns, type VethPairOptions,
} from "./link.js";
export { addAddress, replaceAddress, deleteAddress, listAddresses, type AddressInfo, type AddressOptions } from "./address.js";
export { addRoute, replaceRoute, deleteRoute, listRoutes, type RouteInfo, type RouteSpec } from "./route.js";
export { setNeighbor, deleteNeighbor, listNeighbors, type NeighborInfo } from "./neigh.js";
export { writeSysctl, readSysctl, sysctlPath, SysctlError } from "./sysctl.js";
export {
  NetlinkError, NetlinkNotFoundError, NetlinkArgumentError, NetnsError, isNotFound, checkIfName, IFNAME_MAX_BYTES,
} from "./errors.js";
