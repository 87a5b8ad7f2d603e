import { SearchInput, type SearchInputProps } from 'react-admin';

/**
 * A list's search box. Its placeholder is no label (it goes once something is typed), so the same words
 * name the box for assistive technology too. `source` and `alwaysOn` stay props of this element: the
 * list's filter form reads them from it.
 */
export function ListSearch({ placeholder = 'Search', ...props }: SearchInputProps) {
  return <SearchInput {...props} placeholder={placeholder} slotProps={{ htmlInput: { 'aria-label': placeholder } }} />;
}
