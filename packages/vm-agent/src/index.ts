/**
 * @fedmesh/vm-agent: brings a VM or bare-metal host into a fedmesh mesh (see README.md). The process entry is
 * `main.ts` (`fedmesh-vm-agent`); these are its parts, for tests and embedding.
 */
export * from './agent.js';
export * from './bootstrap.js';
export * from './cert-store.js';
export * from './features.js';
export * from './health-reporter.js';
export * from './notify.js';
export * from './prober.js';
