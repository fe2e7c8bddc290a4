
    # session: who is signed in ([guest.session] can require someone).
    user = session.current()
    if user is not None:
        body += f"<p>Signed in as {escape(user.display_name)}.</p>"
    else:
        body += "<p>Nobody is signed in.</p>"
