// Public API of src/meter. Other folders import only this file.
export {};
