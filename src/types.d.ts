// Bun imports non-code files as text with `with { type: "text" }`.
declare module "*.proto" {
  const text: string;
  export default text;
}
