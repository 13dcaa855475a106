// Transports, kept as one import path: the TCP/UDP wrapper (wrapper.ts) and HDLC (hdlc.ts).
export * from "./hdlc.ts";
export * from "./hdlc-link.ts";
export * from "./wrapper.ts";
