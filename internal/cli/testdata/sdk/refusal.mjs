// A crew that sends what a rule forbids with the real OpenAI and Anthropic
// SDKs and prints the error each SDK gives it: the refusal's rule and
// reason must be in it, or the agent cannot tell why it failed.
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";

const base = process.argv[2];
const prompt = "please DROP TABLE users";

try {
  const openai = new OpenAI({ baseURL: base + "/v1", maxRetries: 0 });
  await openai.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: prompt }] });
  console.log("openai: no error");
} catch (e) {
  console.log("openai error: " + e.message);
}

try {
  const anthropic = new Anthropic({ baseURL: base, apiKey: process.env.OPENAI_API_KEY, maxRetries: 0 });
  await anthropic.messages.create({ model: "claude-sonnet-4-5", max_tokens: 16, messages: [{ role: "user", content: prompt }] });
  console.log("anthropic: no error");
} catch (e) {
  console.log("anthropic error: " + e.message);
}
