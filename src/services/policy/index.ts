/** The Postfix policy service (docs/policy.md): see service.ts. */
export { PolicyService, type PolicyServiceDeps } from './service';
