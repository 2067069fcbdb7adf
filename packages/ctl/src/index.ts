export * from './local-mesh.js';
export * from './demo.js';
export * from './echo-app.js';
export * from './logging.js';
export * from './ca-rotation.js';
export * from './drill.js';
export * from './subnet.js';
