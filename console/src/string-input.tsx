import { TextInput, type TextInputProps } from 'react-admin';

const keepEmpty = (value: string | null | undefined): string => value ?? '';

/**
 * A text input for a field the API types as a string, never null (a name, a description): emptied, it
 * sends '', where react-admin's TextInput would send null, which the server refuses.
 */
export function StringInput(props: TextInputProps) {
  return <TextInput parse={keepEmpty} {...props} />;
}
