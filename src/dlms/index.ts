// Public API of src/dlms. Other folders import only this file.
export {};
