/**
 * The one stylesheet, served from /assets/style.css so the CSP can forbid inline styles.
 * Plain system fonts, high contrast (WCAG AA), visible focus, works from 320px wide up.
 */
export const STYLE_CSS = `
:root {
  --bg: #f4f6f9; --card: #ffffff; --text: #1b2330; --muted: #4f5b6b; --line: #d9dee6;
  --brand: #1f5fbf; --brand-dark: #174a96; --ok: #1d7a46; --ok-bg: #e8f5ee; --warn: #8a5a00;
  --warn-bg: #fff6e0; --bad: #b3261e; --bad-bg: #fdecea; --code-bg: #eef1f5;
  color-scheme: light;
}
* { box-sizing: border-box; }
html { font-size: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--text);
  font: 1rem/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
header.site { background: var(--card); border-bottom: 1px solid var(--line); }
header.site .inner { max-width: 46rem; margin: 0 auto; padding: .75rem 1.25rem; display: flex; align-items: center; gap: .6rem; }
header.site .logo { width: 1.75rem; height: 1.75rem; border-radius: .45rem; background: var(--brand); color: #fff;
  display: inline-flex; align-items: center; justify-content: center; font-weight: 700; font-size: .9rem; }
header.site .name { font-weight: 600; }
main { max-width: 46rem; margin: 2rem auto; padding: 0 1.25rem; }
main.wide, header.site .inner.wide, footer.site.wide { max-width: 76rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: .9rem; padding: 1.75rem 2rem;
  box-shadow: 0 1px 2px rgba(16, 24, 40, .05); }
.card + .card { margin-top: 1.25rem; }
h1 { font-size: 1.6rem; line-height: 1.25; margin: 0 0 .75rem; }
h2 { font-size: 1.2rem; margin: 1.5rem 0 .5rem; }
.card > h2:first-child { margin-top: 0; }
p { margin: .5rem 0 1rem; }
.lead { font-size: 1.1rem; }
.muted { color: var(--muted); }
.small { font-size: .9rem; }
.icon { display: inline-flex; align-items: center; justify-content: center; width: 3rem; height: 3rem;
  border-radius: 50%; font-size: 1.6rem; font-weight: 700; line-height: 1; margin-bottom: .75rem; }
.icon.ok { background: var(--ok-bg); color: var(--ok); border: 2px solid var(--ok); }
.icon.warn { background: var(--warn-bg); color: var(--warn); border: 2px solid #e0b64a; }
.icon.bad { background: var(--bad-bg); color: var(--bad); border: 2px solid var(--bad); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .35rem 1.25rem; margin: 1rem 0 1.25rem;
  padding: 1rem 1.25rem; background: var(--bg); border-radius: .6rem; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
code, .code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--code-bg);
  padding: .1rem .35rem; border-radius: .3rem; font-size: .95em; overflow-wrap: anywhere; }
.secret { display: block; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 1.45rem;
  letter-spacing: .06em; padding: .9rem 1.1rem; margin: .5rem 0 .75rem; background: var(--ok-bg);
  border: 2px dashed var(--ok); border-radius: .6rem; text-align: center; user-select: all; overflow-wrap: anywhere; }
.button, button { display: inline-block; font: inherit; font-weight: 600; font-size: 1.05rem; padding: .75rem 1.4rem;
  border-radius: .6rem; border: 1px solid var(--brand); background: var(--brand); color: #fff; cursor: pointer;
  text-decoration: none; }
.button:hover, button:hover { background: var(--brand-dark); }
.button.secondary, button.secondary { background: #fff; color: var(--brand); }
.button.secondary:hover, button.secondary:hover { background: #eef4fd; }
button.small { font-size: .9rem; padding: .4rem .8rem; }
a { color: var(--brand); }
a:focus-visible, button:focus-visible, .button:focus-visible, input:focus-visible {
  outline: 3px solid #f0b400; outline-offset: 2px; }
.actions { display: flex; flex-wrap: wrap; gap: .75rem; align-items: center; margin: 1.25rem 0 .5rem; }
.or { margin: 1.5rem 0 .5rem; color: var(--muted); }
.notice { border-radius: .6rem; padding: .9rem 1.1rem; margin: 1rem 0; border: 1px solid; }
.notice > h2:first-child { margin-top: 0; }
.notice.ok { background: var(--ok-bg); border-color: #9fd3b5; }
.notice.warn { background: var(--warn-bg); border-color: #f0d48a; }
.notice.bad { background: var(--bad-bg); border-color: #f1b0aa; }
ol.steps { padding-left: 1.3rem; }
ol.steps li { margin: .35rem 0; }
table { border-collapse: collapse; width: 100%; font-size: .93rem; }
th, td { text-align: left; padding: .6rem .55rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td.nowrap, .nowrap { white-space: nowrap; }
ul.plain { list-style: none; margin: 0; padding: 0; }
ul.plain li + li { margin-top: .35rem; }
.stack { display: flex; flex-direction: column; gap: .4rem; align-items: stretch; }
.stack form { margin: 0; }
.stack button { width: 100%; white-space: nowrap; font-size: .85rem; padding: .4rem .7rem; }
main.wide .card { padding: 1.5rem 1.5rem; }
td.error { overflow-wrap: anywhere; max-width: 16rem; }
th { color: var(--muted); font-weight: 600; white-space: nowrap; }
.table-wrap { overflow-x: auto; }
.badge { display: inline-block; padding: .1rem .55rem; border-radius: 1rem; font-size: .82rem; font-weight: 600;
  white-space: nowrap; }
.badge.active { background: var(--ok-bg); color: var(--ok); }
.badge.needs-consent { background: var(--bad-bg); color: var(--bad); }
.badge.failing { background: var(--warn-bg); color: var(--warn); }
.badge.unreadable { background: var(--bad-bg); color: var(--bad); }
.badge.none { background: var(--code-bg); color: var(--muted); }
form.inline { display: inline; margin: 0; }
label { display: block; font-weight: 600; margin: .5rem 0 .25rem; }
input[type=text], input[type=email] { font: inherit; padding: .55rem .7rem; border: 1px solid #9aa5b4; border-radius: .45rem;
  width: 100%; max-width: 24rem; }
footer.site { max-width: 46rem; margin: 0 auto 2rem; padding: 0 1.25rem; color: var(--muted); font-size: .85rem; }
@media (max-width: 30rem) { .card { padding: 1.25rem; } dl.facts { grid-template-columns: 1fr; } }
`;
