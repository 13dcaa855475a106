// One error class for the firmware boundary; codes are seed 000's rollback.log strings where they exist.
export type FirmwareErrorCode =
  | "ERROR_CRC_MISMATCH"
  | "SIGN_AUTH_FAIL"
  | "WDT_REBOOT_LOOP"
  | "MEM_ACCESS_VIOLATION"
  | "VERSION_ROLLBACK_REFUSED"
  | "COMPONENT_NOT_UPDATABLE"
  | "HW_TARGET_MISMATCH"
  | "IMAGE_EXPIRED"
  | "BAD_IMAGE"
  | "BAD_STATE"
  | "NOT_BOOTABLE"
  | "TRUNCATED";

export class FirmwareError extends Error {
  readonly code: FirmwareErrorCode;
  /** A finer cause where one code covers several (SIGN_AUTH_FAIL: CERT_EXPIRED, BAD_SIGNATURE, …). */
  readonly detail: string | undefined;

  constructor(code: FirmwareErrorCode, message: string, detail?: string) {
    super(`${code}: ${message}`);
    this.name = "FirmwareError";
    this.code = code;
    this.detail = detail;
  }
}
