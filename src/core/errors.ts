/** A problem the user can fix: the message says what to do; `setting` names the setting that fixes it, if one does. */
export class UserError extends Error {
  constructor(message: string, readonly setting?: string) {
    super(message);
    this.name = "UserError";
  }
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
