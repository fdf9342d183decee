import {
  findContextWindow,
  findPricing,
  loadPriceTable,
  type ModelPricing,
  type ProviderId,
} from "../metering/index.js";
import type { PolicyRules } from "../policy/index.js";
import type { PriceLookup } from "./ports.js";

/** More remembered prices than this starts the memory over: a run uses a handful of models. */
const MAX_REMEMBERED = 1000;

/**
 * The offline price table with the policy's `--price` overrides. A table lookup walks the table
 * (5% of a metered call's CPU): remembered per provider and model for the minute it was made in,
 * so a dated price change applies within a minute.
 */
export function tablePrices(overrides: PolicyRules["prices"]): PriceLookup {
  const remembered = new Map<string, { minute: number; pricing: ModelPricing | undefined }>();
  return {
    ready: loadPriceTable,
    pricing(provider: ProviderId, model: string, at: Date) {
      const minute = Math.floor(at.getTime() / 60_000);
      const key = `${provider} ${model}`;
      const known = remembered.get(key);
      if (known?.minute === minute) return known.pricing;
      const pricing = findPricing(provider, model, overrides, at);
      if (remembered.size > MAX_REMEMBERED) remembered.clear();
      remembered.set(key, { minute, pricing });
      return pricing;
    },
    contextWindow: findContextWindow,
  };
}
