
  // session: who is signed in ([guest.session] can require someone).
  const user = session.current();
  body += user ? `<p>Signed in as ${escape(user.displayName)}.</p>` : '<p>Nobody is signed in.</p>';
