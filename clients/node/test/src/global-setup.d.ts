/** Playwright globalSetup: starts `stockroom agent` when there is no agent; returns its teardown. */
export default function stockroomGlobalSetup(): Promise<(() => Promise<void>) | undefined>;
