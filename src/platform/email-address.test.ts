import { describe, expect, it } from 'vitest';
import { isEmailAddress } from './email-address.js';

describe('isEmailAddress', () => {
  it('takes the ASCII addresses it always took', () => {
    for (const address of [
      'jane@example.com',
      'Jane.Doe+tag@Mail.Example.COM',
      "o'brien@example.ie",
      'a@b.co',
      'x@xn--bcher-kva.example',
      'a@a-b.c-d.example',
    ]) {
      expect(isEmailAddress(address), address).toBe(true);
    }
  });

  it('takes a domain that is an internationalized domain name, as Django does after punycode', () => {
    for (const address of [
      'jane@bücher.example',
      'jane@BÜCHER.example',
      'info@例え.テスト',
      'a@mail.straße.de',
      'a@bücher。example',
    ]) {
      expect(isEmailAddress(address), address).toBe(true);
    }
  });

  it('refuses a local part that is not ASCII, whatever the domain', () => {
    expect(isEmailAddress('müller@a.example')).toBe(false);
    expect(isEmailAddress('müller@bücher.example')).toBe(false);
  });

  it('refuses a domain whose ASCII form is no host name', () => {
    for (const address of [
      'a@b..example',
      'a@-x.example',
      'a@x-.example',
      'a@bücher..example',
      'a@-bücher.example',
      'a@bücher-.example',
      'a@.bücher.example',
      'a@bücher.example.',
      `a@${'x'.repeat(64)}.example`,
      `a@bücher${'x'.repeat(60)}.example`,
      `a@${'bücher.'.repeat(40)}example`,
      'a@1.2.3.4',
      'a@１２３.４５６',
      'a@bücher.１２３',
      'a@bücher',
      'a@localhost',
      'a@b_c.example',
      'a@bü_cher.example',
      'a@bü%41.example',
      'a@bü cher.example',
      'a@xn--zz.bücher.example',
      'a@',
      '@bücher.example',
      'a@b@bücher.example',
      'no-at-sign',
    ]) {
      expect(isEmailAddress(address), address).toBe(false);
    }
  });

  it('refuses an address longer than 254 characters', () => {
    const domain = `${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.example`;
    const local = 'l'.repeat(254 - domain.length - 1);
    expect(isEmailAddress(`${local}@${domain}`)).toBe(true);
    expect(isEmailAddress(`${local}x@${domain}`)).toBe(false);
    expect(isEmailAddress(`${local.slice(2)}@ü.${domain}`)).toBe(true);
    expect(isEmailAddress(`${local.slice(1)}@ü.${domain}`)).toBe(false);
  });
});
