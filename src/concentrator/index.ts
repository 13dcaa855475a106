// Public API of src/concentrator. Other folders import only this file.
export {};
