
        // session: who is signed in ([guest.session] can require someone).
        match session::current() {
            Some(user) => body.push_str(&format!(
                "<p>Signed in as {}.</p>",
                escape(&user.display_name)
            )),
            None => body.push_str("<p>Nobody is signed in.</p>"),
        }
