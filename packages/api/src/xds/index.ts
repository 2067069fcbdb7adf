export * from './type-urls.js';
export * from './protos.js';
export * from './names.js';
