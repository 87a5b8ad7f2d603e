import { TextField } from '@mui/material';
import { type ReactNode, useEffect, useRef, useState } from 'react';
import { FieldTitle, InputHelperText, useInput, type Validator } from 'react-admin';

/** What the text area holds while it is not JSON: kept as typed, and refused by validation. */
class UnparsedJson {
  constructor(readonly text: string) {}
}

function toText(value: unknown): string {
  if (value instanceof UnparsedJson) return value.text;
  return value === undefined || value === null ? '' : JSON.stringify(value, null, 2);
}

function fromText(text: string): unknown {
  if (text.trim() === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    return new UnparsedJson(text);
  }
}

const validJson: Validator = (value) => (value instanceof UnparsedJson ? 'Not valid JSON' : undefined);
const anObject: Validator = (value) =>
  value !== null && value !== undefined && (typeof value !== 'object' || Array.isArray(value))
    ? 'Give a JSON object ({ … })'
    : undefined;

export interface JsonInputProps {
  source: string;
  label?: string;
  helperText?: ReactNode;
  validate?: Validator | Validator[];
  /** Only a JSON object is a value (a JSON Schema, a profile). */
  object?: boolean;
}

/**
 * A JSON value typed as text. The form holds the parsed value, so a save sends JSON, not a string; the
 * text is kept as typed (a reformatting on each keystroke would move the caret and eat spaces) and is
 * written afresh only when the value changes from outside, as when the record loads.
 */
export function JsonInput({ source, label, helperText, validate, object }: JsonInputProps) {
  const extra = validate === undefined ? [] : Array.isArray(validate) ? validate : [validate];
  const {
    field,
    fieldState: { error, invalid },
    id,
    isRequired,
  } = useInput({ source, validate: [validJson, ...(object ? [anObject] : []), ...extra] });
  const [text, setText] = useState(() => toText(field.value));
  const emitted = useRef<unknown>(field.value);
  useEffect(() => {
    if (field.value !== emitted.current) {
      emitted.current = field.value;
      setText(toText(field.value));
    }
  }, [field.value]);
  return (
    <TextField
      id={id}
      name={field.name}
      inputRef={field.ref}
      value={text}
      onChange={(event) => {
        const value = fromText(event.target.value);
        emitted.current = value;
        setText(event.target.value);
        field.onChange(value);
      }}
      onBlur={field.onBlur}
      multiline
      minRows={3}
      fullWidth
      size="small"
      margin="dense"
      className={`ra-input ra-input-${source}`}
      slotProps={{
        htmlInput: {
          spellCheck: false,
          style: { fontFamily: 'monospace' },
          // The label's asterisk alone is not announced as "required" (see required-input.ts).
          'aria-required': isRequired ? 'true' : undefined,
        },
      }}
      label={<FieldTitle label={label} source={source} isRequired={isRequired} />}
      error={invalid}
      helperText={<InputHelperText error={error?.message} helperText={helperText} />}
    />
  );
}
