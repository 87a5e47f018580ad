// GraphiQL at /graphql/ (graphql_api/templates/graphql_api/graphiql.html), on the files this
// backend serves (graphql_api/assets.py): queries and mutations over HTTP with the
// session and its CSRF token, subscriptions over the WebSocket at the same URL.
// The editor keeps its document in ?q= (?query= would run it). Adapted from Strawberry's
// GraphiQL page; a file of its own, so that the page's
// Content-Security-Policy allows scripts from this origin only.
"use strict";

const EXAMPLE_QUERY = `# GraphiQL for the audit log. Ctrl-Enter runs the query; Ctrl-Space completes.
#
# The newest entries of your organization (administrators of Paid-plan organizations):
{
  auditLogs(first: 10) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { event time user { email name } ip details } }
  }
}

# Every event type, for a filter:
#   { auditEventTypes { value description } }
# New entries as they are recorded (runs over the WebSocket):
#   subscription { auditLogCreated { cursor node { event time user { email } } } }
`;

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return null;
}

const parameters = Object.fromEntries(new URLSearchParams(window.location.search));

function updateURL(changes) {
  Object.assign(parameters, changes);
  const search = new URLSearchParams(
    Object.entries(parameters).filter(([, value]) => Boolean(value)),
  ).toString();
  history.replaceState(null, "", search ? `?${search}` : window.location.pathname);
}

const fetchURL = window.location.href.split("?")[0];
const subscriptionURL = (() => {
  const url = new URL(fetchURL);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.hash = "";
  return url.toString();
})();

const headers = {};
const csrfToken = cookie("csrftoken");
if (csrfToken) headers["X-CSRFToken"] = csrfToken;

const fetcher = GraphiQL.createFetcher({ url: fetchURL, headers, subscriptionUrl: subscriptionURL });

function GraphiQLWithExplorer() {
  const [query, setQuery] = React.useState(parameters.q || EXAMPLE_QUERY);
  const [variables, setVariables] = React.useState(parameters.variables);
  const explorer = React.useMemo(() => GraphiQLPluginExplorer.explorerPlugin(), []);
  return React.createElement(GraphiQL, {
    fetcher,
    defaultEditorToolsVisibility: true,
    plugins: [explorer],
    query,
    variables,
    onEditQuery(value) {
      setQuery(value);
      updateURL({ q: value });
    },
    onEditVariables(value) {
      setVariables(value);
      updateURL({ variables: value });
    },
    inputValueDeprecation: true,
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: false,
  });
}

ReactDOM.createRoot(document.getElementById("graphiql")).render(
  React.createElement(GraphiQLWithExplorer),
);
