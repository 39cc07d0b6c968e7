/** The Postfix policy service (docs/policy.md): see service.ts. */
export { checkPolicyConfig, PolicyService, type PolicyServiceDeps } from './service';
