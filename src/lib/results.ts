/**
 * Typed results that one stage hands to later ones (DKIM signatures to DMARC, every check to
 * Authentication-Results), without a shared mutable object: a stage returns entries made with
 * a ResultKey, the runner keeps them for the transaction, later stages read them through the
 * same key. The key's type parameter types both sides; its name is only for the log.
 *
 * Keys are made once, beside the result type they carry (lib/authentication-results.ts).
 */

export class ResultKey<T> {
  /** Never read: it makes ResultKey<A> and ResultKey<B> different types. */
  declare private readonly type: T;

  constructor(readonly name: string) {}

  entry(value: T): ResultEntry {
    return { key: this, value };
  }
}

export interface ResultEntry {
  readonly key: ResultKey<unknown>;
  readonly value: unknown;
}

/** What a stage can read of the results the stages before it returned. */
export interface Results {
  get<T>(key: ResultKey<T>): T | undefined;
}

/** The runner's record of one transaction's results; a later entry for a key replaces the earlier one. */
export class ResultSet implements Results {
  private readonly values = new Map<ResultKey<unknown>, unknown>();

  add(entries: readonly ResultEntry[] | undefined): void {
    for (const e of entries ?? []) this.values.set(e.key, e.value);
  }

  get<T>(key: ResultKey<T>): T | undefined {
    return this.values.get(key as ResultKey<unknown>) as T | undefined;
  }
}

/** No results (a stage run on its own, in tests and tools). */
export const NO_RESULTS: Results = { get: () => undefined };
