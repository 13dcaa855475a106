// Public API of src/lab. Other folders import only this file.
export {};
