export * from './grpc-service.js';
export * from './snapshot.js';
export * from './cache.js';
export * from './server.js';
export * from './client.js';
export * from './resource-type.js';
export * from './delta-client.js';
export * from './delta-server.js';
