import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

/** Runs one of examples/vm's smoke scripts to its end (or kills it at `timeoutMs`), with stdout and stderr together. */
export function runSmokeScript(script: string, options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', [script], { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGTERM'), options.timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/**
 * Processes still running whose command line names the scratch directory a
 * smoke script reported at its end (smoke-lib.sh's cleanup): what it started
 * and did not stop. A daemon started through a shell function once outlived
 * every run, since killing the function's subshell left its node running.
 */
export function leftBehind(output: string): string[] {
  const work = /smoke: stopped what it started in (\S+)/.exec(output)?.[1];
  if (work === undefined) return ['the script did not report its scratch directory'];
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
    } catch {
      continue; // gone meanwhile
    }
    if (cmdline.includes(`${work}/`)) found.push(`${entry}: ${cmdline}`);
  }
  return found;
}
