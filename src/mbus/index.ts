// Public API of src/mbus. Other folders import only this file.
export {};
