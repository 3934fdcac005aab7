// Reads the runner's environment files (GITHUB_ENV, GITHUB_OUTPUT,
// GITHUB_STATE) back: @actions/core writes them, and so does `stockroom start`
// (the variables of the lease); the main step reads what the sidecar wrote.

/**
 * Parses an environment file as the runner does: `NAME=value` lines and
 * `NAME<<DELIM` heredocs. Later entries win, as they do on the runner.
 */
export function parseFileCommands(text) {
  const result = new Map();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line === '') continue;
    const heredoc = line.indexOf('<<');
    const equals = line.indexOf('=');
    if (heredoc > 0 && (equals < 0 || heredoc < equals)) {
      const key = line.slice(0, heredoc);
      const delimiter = line.slice(heredoc + 2);
      const value = [];
      i++;
      while (i < lines.length && lines[i] !== delimiter) value.push(lines[i++]);
      if (i >= lines.length) throw new Error(`unterminated heredoc for ${key} (delimiter ${delimiter})`);
      result.set(key, value.join('\n'));
    } else if (equals > 0) {
      result.set(line.slice(0, equals), line.slice(equals + 1));
    } else {
      throw new Error(`malformed line in environment file: ${JSON.stringify(line)}`);
    }
  }
  return result;
}
