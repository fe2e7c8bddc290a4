//! The first wall's walk over a parsed statement. Every node is matched by
//! name and every field of it handled, walked or required empty, and
//! anything else is refused: a clause a new sqlparser adds, or a node a
//! generic visitor would not have shown (`… UNION TABLE x`), cannot carry a
//! table past the grant unseen. Names resolve as PostgreSQL resolves them:
//!
//! - a common table expression is visible in its own query and that
//!   query's subqueries, to the later ones of its `WITH`, and inside its
//!   own body only under `WITH RECURSIVE`; every other name in FROM is a
//!   table, checked against the grant;
//! - in `x.y`, `x` must be a table or subquery its query can see (and the
//!   only one of that name in the statement), and `y` a column of it:
//!   PostgreSQL reads `x.y` as the call `y(x)` when `x` has no column `y`
//!   (`c.row_to_json`), and as a call on the column `x` when no table in
//!   reach is named `x`.
//!
//! What a query can see follows PostgreSQL: a SELECT's expressions see its
//! FROM items and those of the queries around it; a JOIN's `ON` only the
//! items joined so far; a subquery in FROM and a CTE's body only the
//! queries around them.

mod exprs;
mod writes;

use super::nodes::{self, name_of};
use super::{Schema, invalid, plain_name};
use crate::capabilities::db::grant::{DbGrant, not_granted};
use crate::capabilities::{Error, ErrorCode};
use sqlparser::ast::{
    ConflictTarget, Cte, Delete, Distinct, DoUpdate, Expr, FromTable, Function, FunctionArg,
    FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, InTarget, Insert, Join, JoinConstraint,
    JoinOperator, LimitClause, NamedWindowDefinition, NamedWindowExpr, ObjectName, ObjectNamePart,
    Offset, OffsetRows, OnConflict, OnConflictAction, OnInsert, OrderBy, OrderByExpr, OrderByKind,
    Query, Select, SelectFlavor, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, SetOperator,
    SetQuantifier, Statement, TableAlias, TableAliasColumnDef, TableFactor, TableObject,
    TableWithJoins, Update, UpdateTableFromKind, Values, WildcardAdditionalOptions, WindowFrame,
    WindowFrameBound, WindowSpec, WindowType, With,
};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

/// What a statement touches.
pub(super) struct Touches {
    /// The tables it reads or writes, for the audit log.
    pub tables: BTreeSet<String>,
    /// Whether it writes (INSERT, UPDATE, DELETE).
    pub writes: bool,
}

/// Checks `statement` against the subset and `grant`.
pub(super) fn walk(
    statement: &Statement,
    grant: &DbGrant,
    schema: &Schema,
) -> Result<Touches, Error> {
    let mut walk = Walk {
        grant,
        schema,
        ctes: Vec::new(),
        scope: Vec::new(),
        bound: HashMap::new(),
        qualifiers: Vec::new(),
        factors: HashMap::new(),
        outputs: HashMap::new(),
        expanding: 0,
        tables: BTreeSet::new(),
    };
    let writes = walk.statement(statement)?;
    // A name given twice could resolve to either in PostgreSQL's eyes.
    for name in &walk.qualifiers {
        if walk.bound.get(name).copied().unwrap_or(0) > 1 {
            return Err(invalid(format!(
                "`{name}` names more than one table or subquery in this statement: give each its own alias before writing `{name}.…`"
            )));
        }
    }
    Ok(Touches {
        tables: walk.tables,
        writes,
    })
}

/// What a name in FROM (or a write's target) stands for.
#[derive(Clone)]
enum Relation<'a> {
    Table(String),
    Cte(&'a Cte),
    Derived(&'a Query),
}

#[derive(Clone)]
struct Binding<'a> {
    name: String,
    relation: Relation<'a>,
}

/// How many CTEs or subqueries deep `*` is expanded to find a column;
/// a cycle (`WITH RECURSIVE c AS (SELECT * FROM c)`) ends here.
const EXPANSION: usize = 32;

struct Walk<'a> {
    grant: &'a DbGrant,
    schema: &'a Schema,
    /// The common table expressions visible here, innermost last.
    ctes: Vec<(String, &'a Cte)>,
    /// The FROM items (and write targets) visible here, innermost last.
    scope: Vec<Binding<'a>>,
    /// How often each name is given to a FROM item in the whole statement.
    bound: HashMap<String, usize>,
    /// Every `x` of an `x.y` or `x.*`.
    qualifiers: Vec<String>,
    /// What each table in FROM resolved to, for expanding `*`.
    factors: HashMap<*const TableFactor, Relation<'a>>,
    /// The output columns of each query asked about.
    outputs: HashMap<*const Query, Rc<BTreeSet<String>>>,
    expanding: usize,
    tables: BTreeSet<String>,
}

impl<'a> Walk<'a> {
    fn statement(&mut self, statement: &'a Statement) -> Result<bool, Error> {
        match statement {
            Statement::Query(query) => self.query(query).map(|()| false),
            Statement::Insert(insert) => self.insert(insert).map(|()| true),
            Statement::Update(update) => self.update(update).map(|()| true),
            Statement::Delete(delete) => self.delete(delete).map(|()| true),
            _ => Err(invalid(
                "only SELECT, INSERT, UPDATE and DELETE are allowed (the host runs each call in a transaction of its own)",
            )),
        }
    }

    fn query(&mut self, query: &'a Query) -> Result<(), Error> {
        let Query {
            with,
            body,
            order_by,
            limit_clause,
            fetch,
            locks,
            for_clause,
            settings,
            format_clause,
            pipe_operators,
        } = query;
        if !locks.is_empty() || for_clause.is_some() {
            return Err(invalid("FOR UPDATE and the like are not allowed"));
        }
        if fetch.is_some() {
            return Err(invalid("FETCH FIRST is not portable: write LIMIT"));
        }
        if settings.is_some() || format_clause.is_some() || !pipe_operators.is_empty() {
            return Err(nodes::not_portable(query));
        }
        let outer = self.ctes.len();
        if let Some(with) = with {
            self.with(with)?;
        }
        match body.as_ref() {
            // ORDER BY sees the FROM items of a plain SELECT; of a UNION,
            // only its result's columns.
            SetExpr::Select(select) => self.select(select, order_by.as_ref())?,
            other => {
                self.set_expr(other)?;
                if let Some(order_by) = order_by {
                    self.order_by(order_by)?;
                }
            }
        }
        if let Some(limit) = limit_clause {
            self.limit(limit)?;
        }
        self.ctes.truncate(outer);
        Ok(())
    }

    fn with(&mut self, with: &'a With) -> Result<(), Error> {
        let With {
            with_token: _,
            recursive,
            cte_tables,
        } = with;
        if *recursive {
            for cte in cte_tables {
                self.ctes.push((name_of(&cte.alias.name), cte));
            }
        }
        for cte in cte_tables {
            let Cte {
                alias,
                query,
                from,
                materialized,
                closing_paren_token: _,
            } = cte;
            if from.is_some() || materialized.is_some() {
                return Err(nodes::not_portable(cte));
            }
            table_alias(alias, true)?;
            self.query(query)?;
            if !*recursive {
                self.ctes.push((name_of(&alias.name), cte));
            }
        }
        Ok(())
    }

    fn set_expr(&mut self, body: &'a SetExpr) -> Result<(), Error> {
        match body {
            SetExpr::Select(select) => self.select(select, None),
            SetExpr::Query(query) => self.query(query),
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                if matches!(op, SetOperator::Minus)
                    || !matches!(
                        set_quantifier,
                        SetQuantifier::None | SetQuantifier::All | SetQuantifier::Distinct
                    )
                {
                    return Err(invalid(format!(
                        "`{op} {set_quantifier}` is not portable: use UNION [ALL], INTERSECT or EXCEPT"
                    )));
                }
                self.set_expr(left)?;
                self.set_expr(right)
            }
            SetExpr::Values(values) => self.values(values),
            SetExpr::Table(table) => Err(invalid(format!(
                "`{table}` is not portable: write SELECT * FROM …"
            ))),
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                Err(invalid("a statement inside a query is not allowed"))
            }
        }
    }

    fn values(&mut self, values: &'a Values) -> Result<(), Error> {
        let Values {
            explicit_row,
            value_keyword: _,
            rows,
        } = values;
        if *explicit_row {
            return Err(nodes::not_portable(values));
        }
        for row in rows {
            for expr in row.iter() {
                self.expr(expr)?;
            }
        }
        Ok(())
    }

    /// A SELECT, and the ORDER BY of the query it is the body of.
    fn select(&mut self, select: &'a Select, order_by: Option<&'a OrderBy>) -> Result<(), Error> {
        let Select {
            select_token: _,
            optimizer_hints,
            distinct,
            select_modifiers,
            top,
            top_before_distinct: _,
            projection,
            exclude,
            into,
            from,
            lateral_views,
            prewhere,
            selection,
            connect_by,
            group_by,
            cluster_by,
            distribute_by,
            sort_by,
            having,
            named_window,
            qualify,
            window_before_qualify: _,
            value_table_mode,
            flavor,
        } = select;
        if into.is_some() {
            return Err(invalid("SELECT … INTO is not allowed"));
        }
        if matches!(distinct, Some(Distinct::On(_))) {
            return Err(invalid("DISTINCT ON is PostgreSQL's own: use GROUP BY"));
        }
        if !optimizer_hints.is_empty()
            || select_modifiers.is_some()
            || top.is_some()
            || exclude.is_some()
            || !lateral_views.is_empty()
            || prewhere.is_some()
            || !connect_by.is_empty()
            || !cluster_by.is_empty()
            || !distribute_by.is_empty()
            || !sort_by.is_empty()
            || qualify.is_some()
            || value_table_mode.is_some()
            || !matches!(flavor, SelectFlavor::Standard)
        {
            return Err(nodes::not_portable(select));
        }
        // The FROM items join the scope once all are read: a subquery in
        // FROM does not see its siblings.
        let mut items = Vec::new();
        for item in from {
            self.source(item, &mut items)?;
        }
        self.in_scope(items, |this| {
            for item in projection {
                this.select_item(item)?;
            }
            if let Some(selection) = selection {
                this.expr(selection)?;
            }
            match group_by {
                GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => {
                    for expr in exprs {
                        this.expr(expr)?;
                    }
                }
                other => return Err(nodes::not_portable(other)),
            }
            if let Some(having) = having {
                this.expr(having)?;
            }
            for NamedWindowDefinition(name, window) in named_window {
                nodes::ident(name)?;
                match window {
                    NamedWindowExpr::NamedWindow(other) => nodes::ident(other)?,
                    NamedWindowExpr::WindowSpec(spec) => this.window(spec)?,
                }
            }
            if let Some(order_by) = order_by {
                this.order_by(order_by)?;
            }
            Ok(())
        })
    }

    fn select_item(&mut self, item: &'a SelectItem) -> Result<(), Error> {
        match item {
            SelectItem::UnnamedExpr(expr) => self.expr(expr),
            SelectItem::ExprWithAlias { expr, alias } => {
                nodes::ident(alias)?;
                self.expr(expr)
            }
            SelectItem::Wildcard(options) => wildcard(options),
            SelectItem::QualifiedWildcard(
                SelectItemQualifiedWildcardKind::ObjectName(name),
                options,
            ) => {
                wildcard(options)?;
                let [ObjectNamePart::Identifier(table)] = name.0.as_slice() else {
                    return Err(invalid(format!("`{name}.*`: name a table of this query")));
                };
                nodes::ident(table)?;
                self.in_reach(table, &format!("{name}.*"))?;
                Ok(())
            }
            other => Err(nodes::not_portable(other)),
        }
    }

    /// One item of a FROM list: a table or subquery and what is joined to
    /// it; each gets a binding in `items`.
    fn source(
        &mut self,
        item: &'a TableWithJoins,
        items: &mut Vec<Binding<'a>>,
    ) -> Result<(), Error> {
        let TableWithJoins { relation, joins } = item;
        let first = items.len();
        self.factor(relation, items)?;
        for join in joins {
            let Join {
                relation,
                global,
                join_operator,
            } = join;
            if *global {
                return Err(nodes::not_portable(join));
            }
            self.factor(relation, items)?;
            let constraint = match join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::CrossJoin(c) => c,
                _ => {
                    return Err(invalid(format!(
                        "`{join}` is not portable: use [INNER | LEFT | RIGHT | FULL | CROSS] JOIN"
                    )));
                }
            };
            match constraint {
                JoinConstraint::On(on) => {
                    // ON sees the items joined so far.
                    self.in_scope(items[first..].to_vec(), |this| this.expr(on))?;
                }
                JoinConstraint::Using(columns) => {
                    for column in columns {
                        one_part(column)?;
                    }
                }
                JoinConstraint::Natural | JoinConstraint::None => {}
                JoinConstraint::UsingAlias(..) => return Err(nodes::not_portable(join)),
            }
        }
        Ok(())
    }

    fn factor(
        &mut self,
        factor: &'a TableFactor,
        items: &mut Vec<Binding<'a>>,
    ) -> Result<(), Error> {
        match factor {
            TableFactor::Table { alias, .. } => {
                let (table, relation) = self.relation(plain_table(factor)?)?;
                let binding = match alias {
                    Some(alias) => {
                        table_alias(alias, false)?;
                        name_of(&alias.name)
                    }
                    None => table,
                };
                self.factors.insert(factor, relation.clone());
                self.bind(items, binding, relation);
                Ok(())
            }
            TableFactor::Derived {
                lateral: false,
                subquery,
                alias,
                sample: None,
            } => {
                self.query(subquery)?;
                if let Some(alias) = alias {
                    table_alias(alias, false)?;
                    self.bind(items, name_of(&alias.name), Relation::Derived(subquery));
                }
                Ok(())
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias: None,
            } => self.source(table_with_joins, items),
            _ => Err(invalid(format!(
                "`{factor}`: read from tables and subqueries only (table functions are not portable)"
            ))),
        }
    }

    /// A table named in FROM: a common table expression in reach, or else
    /// a table, which the grant must let the guest read.
    fn relation(&mut self, name: &'a ObjectName) -> Result<(String, Relation<'a>), Error> {
        let table = plain_relation(name)?;
        if let Some((_, cte)) = self.ctes.iter().rev().find(|(n, _)| *n == table) {
            return Ok((table, Relation::Cte(cte)));
        }
        if !self.grant.may_read(&table) {
            return Err(Error::new(ErrorCode::Denied, not_granted(&table, false)));
        }
        self.tables.insert(table.clone());
        Ok((table.clone(), Relation::Table(table)))
    }

    /// The table a write changes, which the grant must let the guest write.
    fn target(&mut self, name: &ObjectName) -> Result<String, Error> {
        let table = plain_relation(name)?;
        if !self.grant.may_write(&table) {
            return Err(Error::new(ErrorCode::Denied, not_granted(&table, true)));
        }
        self.tables.insert(table.clone());
        Ok(table)
    }

    fn bind(&mut self, items: &mut Vec<Binding<'a>>, name: String, relation: Relation<'a>) {
        *self.bound.entry(name.clone()).or_default() += 1;
        items.push(Binding { name, relation });
    }

    /// Walks with `items` in reach, then out of it again.
    fn in_scope(
        &mut self,
        items: Vec<Binding<'a>>,
        walk: impl FnOnce(&mut Self) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let outer = self.scope.len();
        self.scope.extend(items);
        let walked = walk(self);
        self.scope.truncate(outer);
        walked
    }

    /// `SET … [WHERE …]` of an UPDATE or an upsert.
    fn set_where(
        &mut self,
        assignments: &'a [sqlparser::ast::Assignment],
        selection: &'a Option<Expr>,
    ) -> Result<(), Error> {
        for assignment in assignments {
            self.assignment(assignment)?;
        }
        match selection {
            Some(selection) => self.expr(selection),
            None => Ok(()),
        }
    }
}

/// A FROM item that is a plain table: its name.
fn plain_table(factor: &TableFactor) -> Result<&ObjectName, Error> {
    match factor {
        TableFactor::Table {
            name,
            alias: _,
            args: None,
            with_hints,
            version: None,
            with_ordinality: false,
            partitions,
            json_path: None,
            sample: None,
            index_directives,
            inheritance: None,
        } if with_hints.is_empty() && partitions.is_empty() && index_directives.is_empty() => {
            Ok(name)
        }
        _ => Err(invalid(format!(
            "`{factor}`: read from tables and subqueries only (table functions are not portable)"
        ))),
    }
}

/// A table's name, without a schema.
fn plain_relation(name: &ObjectName) -> Result<String, Error> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => {
            nodes::ident(ident)?;
            Ok(name_of(ident))
        }
        _ => Err(invalid(format!("`{name}`: name tables without a schema"))),
    }
}

/// A column named on its own (`INSERT (a, b)`, `SET a = …`, `USING (a)`).
fn one_part(name: &ObjectName) -> Result<(), Error> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => nodes::ident(ident),
        _ => Err(invalid(format!("`{name}`: name the column alone"))),
    }
}

/// An alias; `columns`, whether it may rename columns (`WITH c(a, b)`):
/// SQLite has no column list after a table or subquery.
fn table_alias(alias: &TableAlias, columns: bool) -> Result<(), Error> {
    let TableAlias {
        explicit: _,
        name,
        columns: renamed,
        at,
    } = alias;
    nodes::ident(name)?;
    if at.is_some() || (!columns && !renamed.is_empty()) {
        return Err(invalid(format!(
            "`{alias}`: name the columns in the subquery (… AS name), not after its alias"
        )));
    }
    for TableAliasColumnDef { name, data_type } in renamed {
        if data_type.is_some() {
            return Err(nodes::not_portable(alias));
        }
        nodes::ident(name)?;
    }
    Ok(())
}

fn wildcard(options: &WildcardAdditionalOptions) -> Result<(), Error> {
    let WildcardAdditionalOptions {
        wildcard_token: _,
        opt_ilike,
        opt_exclude,
        opt_except,
        opt_replace,
        opt_rename,
        opt_alias,
    } = options;
    if opt_ilike.is_some()
        || opt_exclude.is_some()
        || opt_except.is_some()
        || opt_replace.is_some()
        || opt_rename.is_some()
        || opt_alias.is_some()
    {
        return Err(nodes::not_portable(options));
    }
    Ok(())
}

fn no_returning() -> Error {
    invalid("RETURNING is not available: a write returns only its count and last-insert-rowid")
}
