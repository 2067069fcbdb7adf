export * from './kv.js';
export * from './transport.js';
export * from './model.js';
export * from './member.js';
export * from './access.js';
