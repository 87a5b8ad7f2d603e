import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import type { Command } from 'commander';
import { createSuperuser, isUserFacingError, MIN_PASSWORD_LENGTH } from '../modules/auth/auth.service.js';
import { Username } from '../modules/users/users.schemas.js';
import { COMMAND_LINE, checkOptions, fail, withDatabase } from './context.js';

/** Asks one question on the terminal; a hidden answer is not echoed. */
async function ask(question: string, hidden = false): Promise<string> {
  let muted = false;
  // readline echoes typed characters to its output; muting that stream hides a password.
  const output = new Writable({
    write(chunk, encoding, done) {
      if (!muted) process.stdout.write(chunk, encoding);
      done();
    },
  });
  const rl = createInterface({ input: process.stdin, output, terminal: true });
  try {
    process.stdout.write(question);
    muted = hidden;
    return await new Promise<string>((resolve) => rl.question('', resolve));
  } finally {
    muted = false;
    rl.close();
    if (hidden) process.stdout.write('\n');
  }
}

interface Options {
  email?: string;
  password?: string;
  username?: string;
  organization?: string;
}

async function completeOptions(options: Options): Promise<Required<Pick<Options, 'email' | 'password'>> & Options> {
  const interactive = process.stdin.isTTY === true;
  let { email, password } = options;
  if (!email) {
    if (!interactive) fail('createsuperuser: --email is required when stdin is not a terminal');
    email = (await ask('Email: ')).trim();
  }
  if (!password) {
    if (!interactive) fail('createsuperuser: --password is required when stdin is not a terminal');
    for (;;) {
      password = await ask(`Password (at least ${MIN_PASSWORD_LENGTH} characters): `, true);
      if (password.length < MIN_PASSWORD_LENGTH) {
        console.error(`The password must be at least ${MIN_PASSWORD_LENGTH} characters.`);
        continue;
      }
      if ((await ask('Password (again): ', true)) === password) break;
      console.error('The passwords do not match.');
    }
  }
  return { ...options, email, password };
}

export function registerCreateSuperuserCommand(program: Command): void {
  program
    .command('createsuperuser')
    .description('Create a platform superuser (prompts for what is missing on a terminal)')
    .option('--email <email>', 'email address')
    .option(
      '--password <password>',
      `password, at least ${MIN_PASSWORD_LENGTH} characters (prompted, hidden, when omitted)`,
    )
    .option('--username <username>', 'username (default: the part of the email before @, when free)')
    .option('--organization <code>', 'organization code', 'default')
    .action(async (options: Options) => {
      checkOptions('createsuperuser', Type.Object({ username: Type.Optional(Username) }), {
        username: options.username,
      });
      const input = await completeOptions(options);
      let refusal: string | undefined;
      await withDatabase(async (database) => {
        try {
          const user = await createSuperuser(database.db, input, COMMAND_LINE);
          console.log(`created superuser ${user.email} (${user.id})`);
        } catch (err) {
          if (!isUserFacingError(err)) throw err;
          refusal = err.errors?.map((e) => `${e.field}: ${e.message}`).join('; ') || err.message;
        }
      });
      // After the database is closed, so the embedded one is left cleanly.
      if (refusal) fail(`createsuperuser: ${refusal}`);
    });
}
