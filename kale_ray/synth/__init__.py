"""KI rationale synthesis (docs/method.md, Stage 1, step 3): paths artifact -> prompts -> writers on Ray Data."""
