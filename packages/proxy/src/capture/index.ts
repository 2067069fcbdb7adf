export * from './original-dst.js';
export * from './route-by-destination.js';
export * from './iptables.js';
export * from './listener-destination.js';
export * from './original-dst-cluster.js';
