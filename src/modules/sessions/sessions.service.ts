import UAParser from 'ua-parser-js';

export interface DeviceDescription {
  deviceType: string | null;
  browser: string | null;
  os: string | null;
}

const MAX_USER_AGENT = 512;

/**
 * What a session list shows of the client: device type (`desktop`, `mobile`, `tablet`, `console`,
 * `smarttv`, `wearable`, `embedded`, or `other` for a non-browser client), browser and OS with their
 * major versions. ua-parser-js names no type for desktops, so a recognised browser or OS without
 * one is a desktop.
 */
export function describeUserAgent(userAgent: string | undefined): DeviceDescription {
  if (!userAgent) return { deviceType: null, browser: null, os: null };
  const { browser, os, device } = UAParser(userAgent.slice(0, MAX_USER_AGENT));
  const browserName = browser.name ? [browser.name, browser.major].filter(Boolean).join(' ') : null;
  const osName = os.name ? [os.name, os.version].filter(Boolean).join(' ') : null;
  const deviceType = device.type ?? (browserName || osName ? 'desktop' : 'other');
  return { deviceType, browser: browserName, os: osName };
}
