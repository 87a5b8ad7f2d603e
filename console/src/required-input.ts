import { required } from 'react-admin';

// react-admin says an input is required in its label only (the asterisk a screen reader may skip), not
// on the element. These props add `aria-required` through the slots react-admin passes on to Material
// UI. Not the `required` attribute: the browser's own check would then refuse a Save before
// react-admin's validation, whose message and `aria-invalid` would never show.

/** A required text, number or JSON input. */
export const requiredText = {
  validate: required(),
  slotProps: { htmlInput: { 'aria-required': 'true' } },
} as const;

/** A required SelectInput: the attribute goes on the element with the combobox role. */
export const requiredSelect = {
  validate: required(),
  slotProps: { select: { SelectDisplayProps: { 'aria-required': 'true' } } },
} as const;
