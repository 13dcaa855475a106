// Public API of src/dlms: the DLMS/COSEM wire layer (A-XDR, APDUs, wrapper and HDLC transports).

export * from "./acse.ts";
export * from "./apdu.ts";
export * from "./axdr.ts";
export * from "./ciphering.ts";
export * from "./client.ts";
export * from "./decode.ts";
export * from "./errors.ts";
export * from "./image-transfer.ts";
export * from "./keys.ts";
export * from "./obis.ts";
export * from "./push.ts";
export * from "./runtime/hdlc-stream.ts";
export * from "./runtime/tcp.ts";
export * from "./security.ts";
export * from "./server.ts";
export * from "./suite1.ts";
export * from "./transport.ts";
export * from "./units.ts";
