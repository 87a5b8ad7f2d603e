import { describe, expect, it } from 'vitest';
import { joinUrl } from './outbound-http.js';

describe('joinUrl', () => {
  it('joins below the base URL, keeping its path', () => {
    expect(joinUrl('https://api.example.com/v1/', '/users/bulk').toString()).toBe(
      'https://api.example.com/v1/users/bulk',
    );
    expect(joinUrl('https://api.example.com', '/status').toString()).toBe('https://api.example.com/status');
  });

  it('refuses a path that would leave the base URL’s host', () => {
    expect(() => joinUrl('https://api.example.com', '//elsewhere.example/x')).toThrowError(
      expect.objectContaining({ status: 400, errors: [expect.objectContaining({ field: 'path' })] }),
    );
  });
});
