/** The Postfix policy service (docs/policy.md): see service.ts. */
export { checkPolicyConfig } from './context';
export { PolicyService, type PolicyServiceDeps } from './service';
