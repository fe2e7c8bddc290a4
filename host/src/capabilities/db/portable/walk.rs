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

    fn insert(&mut self, insert: &'a Insert) -> Result<(), Error> {
        let Insert {
            insert_token: _,
            optimizer_hints,
            or,
            ignore,
            into: _,
            table,
            table_alias,
            columns,
            by_name,
            overwrite,
            source,
            assignments,
            partitioned,
            after_columns,
            overriding,
            has_table_keyword,
            on,
            returning,
            output,
            replace_into,
            priority,
            insert_alias,
            settings,
            format_clause,
            multi_table_insert_type,
            multi_table_into_clauses,
            multi_table_when_clauses,
            multi_table_else_clause,
        } = insert;
        if or.is_some() || *replace_into || *ignore {
            return Err(invalid(
                "INSERT OR … is SQLite's own: write INSERT … ON CONFLICT (…) DO UPDATE SET … or DO NOTHING",
            ));
        }
        if returning.is_some() {
            return Err(no_returning());
        }
        if !optimizer_hints.is_empty()
            || table_alias.is_some()
            || *by_name
            || *overwrite
            || !assignments.is_empty()
            || partitioned.is_some()
            || !after_columns.is_empty()
            || overriding.is_some()
            || *has_table_keyword
            || output.is_some()
            || priority.is_some()
            || insert_alias.is_some()
            || settings.is_some()
            || format_clause.is_some()
            || multi_table_insert_type.is_some()
            || !multi_table_into_clauses.is_empty()
            || !multi_table_when_clauses.is_empty()
            || multi_table_else_clause.is_some()
        {
            return Err(nodes::not_portable(insert));
        }
        let TableObject::TableName(name) = table else {
            return Err(invalid("insert into a table by its name"));
        };
        let target = self.target(name)?;
        for column in columns {
            one_part(column)?;
        }
        // The rows to insert do not see the target.
        let Some(source) = source else {
            return Err(invalid("INSERT needs VALUES (…) or a SELECT"));
        };
        self.query(source)?;
        match on {
            None => Ok(()),
            Some(OnInsert::OnConflict(OnConflict {
                conflict_target,
                action,
            })) => {
                // The conflict's clauses see the target and `excluded`, the
                // row that was to be inserted.
                let mut items = Vec::new();
                self.bind(&mut items, target.clone(), Relation::Table(target.clone()));
                self.bind(&mut items, "excluded".into(), Relation::Table(target));
                self.in_scope(items, |this| {
                    match conflict_target {
                        None => {}
                        Some(ConflictTarget::Columns { columns, predicate }) => {
                            for column in columns {
                                nodes::ident(column)?;
                            }
                            if let Some(predicate) = predicate {
                                this.expr(predicate)?;
                            }
                        }
                        Some(ConflictTarget::OnConstraint(_)) => {
                            return Err(invalid(
                                "ON CONFLICT ON CONSTRAINT is PostgreSQL's own: name the columns, ON CONFLICT (…)",
                            ));
                        }
                    }
                    match action {
                        OnConflictAction::DoNothing => Ok(()),
                        OnConflictAction::DoUpdate(DoUpdate {
                            assignments,
                            selection,
                        }) => this.set_where(assignments, selection),
                    }
                })
            }
            Some(_) => Err(invalid(
                "ON DUPLICATE KEY UPDATE is not portable: write ON CONFLICT (…) DO UPDATE SET …",
            )),
        }
    }

    fn update(&mut self, update: &'a Update) -> Result<(), Error> {
        let Update {
            update_token: _,
            optimizer_hints,
            table,
            on_cluster,
            assignments,
            from,
            selection,
            returning,
            output,
            or,
            order_by,
            limit,
            settings,
        } = update;
        if or.is_some() {
            return Err(invalid("UPDATE OR … is SQLite's own"));
        }
        if returning.is_some() {
            return Err(no_returning());
        }
        if !order_by.is_empty() || limit.is_some() {
            return Err(invalid(
                "UPDATE … ORDER BY/LIMIT is SQLite's own: select the rows in WHERE",
            ));
        }
        if !optimizer_hints.is_empty()
            || on_cluster.is_some()
            || output.is_some()
            || settings.is_some()
            || !table.joins.is_empty()
        {
            return Err(nodes::not_portable(update));
        }
        let mut items = Vec::new();
        self.target_binding(&table.relation, &mut items)?;
        match from {
            None => {}
            Some(UpdateTableFromKind::AfterSet(from)) => {
                for item in from {
                    self.source(item, &mut items)?;
                }
            }
            Some(UpdateTableFromKind::BeforeSet(_)) => return Err(nodes::not_portable(update)),
        }
        self.in_scope(items, |this| this.set_where(assignments, selection))
    }

    fn delete(&mut self, delete: &'a Delete) -> Result<(), Error> {
        let Delete {
            delete_token: _,
            optimizer_hints,
            tables,
            from,
            on_cluster,
            using,
            selection,
            returning,
            output,
            order_by,
            limit,
            settings,
        } = delete;
        if returning.is_some() {
            return Err(no_returning());
        }
        if !order_by.is_empty() || limit.is_some() || !tables.is_empty() {
            return Err(invalid(
                "DELETE … ORDER BY/LIMIT is SQLite's own: select the rows in WHERE",
            ));
        }
        if using.is_some() {
            return Err(invalid(
                "DELETE … USING is PostgreSQL's own: select the rows in WHERE (… IN (SELECT …))",
            ));
        }
        if !optimizer_hints.is_empty()
            || on_cluster.is_some()
            || output.is_some()
            || settings.is_some()
        {
            return Err(nodes::not_portable(delete));
        }
        let FromTable::WithFromKeyword(from) = from else {
            return Err(invalid("DELETE FROM one table"));
        };
        let [TableWithJoins { relation, joins }] = from.as_slice() else {
            return Err(invalid("DELETE FROM one table"));
        };
        if !joins.is_empty() {
            return Err(invalid("DELETE FROM one table"));
        }
        let mut items = Vec::new();
        self.target_binding(relation, &mut items)?;
        self.in_scope(items, |this| match selection {
            Some(selection) => this.expr(selection),
            None => Ok(()),
        })
    }

    /// The table an UPDATE or DELETE changes, bound under its alias.
    fn target_binding(
        &mut self,
        factor: &'a TableFactor,
        items: &mut Vec<Binding<'a>>,
    ) -> Result<(), Error> {
        let target = self.target(plain_table(factor)?)?;
        let name = match factor {
            TableFactor::Table {
                alias: Some(alias), ..
            } => {
                table_alias(alias, false)?;
                name_of(&alias.name)
            }
            _ => target.clone(),
        };
        self.bind(items, name, Relation::Table(target));
        Ok(())
    }

    fn assignment(&mut self, assignment: &'a sqlparser::ast::Assignment) -> Result<(), Error> {
        match &assignment.target {
            sqlparser::ast::AssignmentTarget::ColumnName(column) => one_part(column)?,
            sqlparser::ast::AssignmentTarget::Tuple(_) => {
                return Err(nodes::not_portable(assignment));
            }
        }
        self.expr(&assignment.value)
    }

    fn order_by(&mut self, order_by: &'a OrderBy) -> Result<(), Error> {
        let OrderBy { kind, interpolate } = order_by;
        match kind {
            OrderByKind::Expressions(exprs) if interpolate.is_none() => {
                for expr in exprs {
                    self.order_by_expr(expr)?;
                }
                Ok(())
            }
            _ => Err(nodes::not_portable(order_by)),
        }
    }

    fn order_by_expr(&mut self, expr: &'a OrderByExpr) -> Result<(), Error> {
        let OrderByExpr {
            expr: value,
            options: _,
            with_fill,
        } = expr;
        if with_fill.is_some() {
            return Err(nodes::not_portable(expr));
        }
        self.expr(value)
    }

    fn limit(&mut self, limit: &'a LimitClause) -> Result<(), Error> {
        match limit {
            LimitClause::LimitOffset {
                limit: count,
                offset,
                limit_by,
            } if limit_by.is_empty() => {
                if let Some(count) = count {
                    self.expr(count)?;
                }
                match offset {
                    None => Ok(()),
                    Some(Offset {
                        value,
                        rows: OffsetRows::None,
                    }) => self.expr(value),
                    Some(other) => Err(nodes::not_portable(other)),
                }
            }
            LimitClause::OffsetCommaLimit { .. } => Err(invalid(
                "LIMIT offset, count is SQLite's own: write LIMIT count OFFSET offset",
            )),
            other => Err(nodes::not_portable(other)),
        }
    }

    fn window(&mut self, spec: &'a WindowSpec) -> Result<(), Error> {
        let WindowSpec {
            window_name,
            partition_by,
            order_by,
            window_frame,
        } = spec;
        if let Some(name) = window_name {
            nodes::ident(name)?;
        }
        for expr in partition_by {
            self.expr(expr)?;
        }
        for expr in order_by {
            self.order_by_expr(expr)?;
        }
        if let Some(WindowFrame {
            units: _,
            start_bound,
            end_bound,
        }) = window_frame
        {
            for bound in std::iter::once(start_bound).chain(end_bound) {
                match bound {
                    WindowFrameBound::Preceding(Some(expr))
                    | WindowFrameBound::Following(Some(expr)) => self.expr(expr)?,
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// An expression: the node's kind checked (`nodes::expression`), then
    /// its children walked. The depth of the recursion is bounded by
    /// `depth.rs` before parsing.
    fn expr(&mut self, expr: &'a Expr) -> Result<(), Error> {
        nodes::expression(expr)?;
        match expr {
            Expr::Identifier(column) => nodes::column(column),
            Expr::CompoundIdentifier(parts) => {
                for part in parts {
                    nodes::ident(part)?;
                }
                let [table, column] = parts.as_slice() else {
                    return Err(nodes::not_portable(expr));
                };
                self.qualified(table, column)
            }
            Expr::Value(value) => nodes::value(value),
            Expr::Nested(inner)
            | Expr::IsNull(inner)
            | Expr::IsNotNull(inner)
            | Expr::UnaryOp { expr: inner, .. }
            | Expr::Collate { expr: inner, .. }
            | Expr::Cast { expr: inner, .. }
            | Expr::Trim { expr: inner, .. } => self.expr(inner),
            Expr::IsDistinctFrom(left, right)
            | Expr::IsNotDistinctFrom(left, right)
            | Expr::BinaryOp { left, right, .. } => {
                self.expr(left)?;
                self.expr(right)
            }
            Expr::In {
                expr: value,
                target,
                ..
            } => {
                self.expr(value)?;
                match target {
                    InTarget::List(list) => {
                        for item in list {
                            self.expr(item)?;
                        }
                        Ok(())
                    }
                    InTarget::Subquery(query) => self.query(query),
                    _ => Err(nodes::not_portable(expr)),
                }
            }
            Expr::Between {
                expr: value,
                low,
                high,
                ..
            } => {
                self.expr(value)?;
                self.expr(low)?;
                self.expr(high)
            }
            Expr::Exists { subquery, .. } | Expr::Subquery(subquery) => self.query(subquery),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(operand) = operand {
                    self.expr(operand)?;
                }
                for when in conditions {
                    self.expr(&when.condition)?;
                    self.expr(&when.result)?;
                }
                if let Some(result) = else_result {
                    self.expr(result)?;
                }
                Ok(())
            }
            Expr::Like {
                expr: value,
                pattern,
                escape_char,
                ..
            } => {
                self.expr(value)?;
                self.expr(pattern)?;
                if let Some(escape) = escape_char {
                    self.expr(escape)?;
                }
                Ok(())
            }
            Expr::Substring {
                expr: value,
                substring_from,
                substring_for,
                ..
            } => {
                self.expr(value)?;
                for part in substring_from.iter().chain(substring_for) {
                    self.expr(part)?;
                }
                Ok(())
            }
            Expr::Function(function) => self.function(function),
            other => Err(nodes::not_portable(other)),
        }
    }

    fn function(&mut self, function: &'a Function) -> Result<(), Error> {
        // The name, `parameters`, `within_group` and the rest are checked
        // by `nodes::function_call`, which `nodes::expression` ran.
        if let FunctionArguments::List(list) = &function.args {
            for arg in &list.args {
                if let FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) = arg {
                    self.expr(expr)?;
                }
            }
        }
        if let Some(filter) = &function.filter {
            self.expr(filter)?;
        }
        match &function.over {
            None => Ok(()),
            Some(WindowType::NamedWindow(name)) => nodes::ident(name),
            Some(WindowType::WindowSpec(spec)) => self.window(spec),
        }
    }

    /// `table.column`: a table in reach, and a column it has.
    fn qualified(&mut self, table: &Ident, column: &Ident) -> Result<(), Error> {
        let relation = self.in_reach(table, &format!("{table}.{column}"))?;
        let columns = self.columns(&relation);
        if !columns.contains(&name_of(column)) {
            return Err(invalid(format!(
                "`{table}.{column}`: `{table}` has no column `{column}` (a computed column of a subquery needs a name: AS …)"
            )));
        }
        Ok(())
    }

    /// What `table` stands for where it is used.
    fn in_reach(&mut self, table: &Ident, used: &str) -> Result<Relation<'a>, Error> {
        let name = name_of(table);
        let Some(binding) = self.scope.iter().rev().find(|b| b.name == name) else {
            return Err(invalid(format!(
                "`{used}`: no table or subquery named `{table}` is in reach here; name one of this query's FROM"
            )));
        };
        let relation = binding.relation.clone();
        self.qualifiers.push(name);
        Ok(relation)
    }

    /// The columns a table, CTE or subquery has.
    fn columns(&mut self, relation: &Relation<'a>) -> Rc<BTreeSet<String>> {
        match relation {
            Relation::Table(table) => {
                Rc::new(self.schema.columns.get(table).cloned().unwrap_or_default())
            }
            Relation::Cte(cte) if !cte.alias.columns.is_empty() => Rc::new(
                cte.alias
                    .columns
                    .iter()
                    .map(|column| name_of(&column.name))
                    .collect(),
            ),
            Relation::Cte(cte) => self.outputs(&cte.query),
            Relation::Derived(query) => self.outputs(query),
        }
    }

    /// The names of a query's result columns: its first SELECT's.
    fn outputs(&mut self, query: &'a Query) -> Rc<BTreeSet<String>> {
        let key: *const Query = query;
        if let Some(found) = self.outputs.get(&key) {
            return found.clone();
        }
        if self.expanding >= EXPANSION {
            return Rc::default();
        }
        self.expanding += 1;
        let mut names = BTreeSet::new();
        let mut body = query.body.as_ref();
        loop {
            match body {
                SetExpr::SetOperation { left, .. } => body = left,
                SetExpr::Query(inner) => {
                    names = self.outputs(inner).as_ref().clone();
                    break;
                }
                SetExpr::Select(select) => {
                    self.select_outputs(select, &mut names);
                    break;
                }
                SetExpr::Values(values) => {
                    let width = values.rows.first().map_or(0, |row| row.len());
                    names.extend((1..=width).map(|i| format!("column{i}")));
                    break;
                }
                _ => break,
            }
        }
        self.expanding -= 1;
        let names = Rc::new(names);
        self.outputs.insert(key, names.clone());
        names
    }

    fn select_outputs(&mut self, select: &'a Select, names: &mut BTreeSet<String>) {
        for item in &select.projection {
            match item {
                SelectItem::UnnamedExpr(Expr::Identifier(column)) => {
                    names.insert(name_of(column));
                }
                SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                    names.extend(parts.last().map(name_of));
                }
                SelectItem::ExprWithAlias { alias, .. } => {
                    names.insert(name_of(alias));
                }
                SelectItem::Wildcard(_) => {
                    for item in &select.from {
                        self.item_columns(item, None, names);
                    }
                }
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(table),
                    _,
                ) => {
                    let table = plain_name(table);
                    for item in &select.from {
                        self.item_columns(item, table.as_deref(), names);
                    }
                }
                // A computed column PostgreSQL names on its own (`count`,
                // `?column?`): no name to count on.
                _ => {}
            }
        }
    }

    /// The columns of the items of one FROM entry (only of the item named
    /// `only`, if given).
    fn item_columns(
        &mut self,
        item: &'a TableWithJoins,
        only: Option<&str>,
        names: &mut BTreeSet<String>,
    ) {
        for factor in std::iter::once(&item.relation).chain(item.joins.iter().map(|j| &j.relation))
        {
            let (name, relation) = match factor {
                TableFactor::Table { name, alias, .. } => (
                    alias
                        .as_ref()
                        .map(|a| name_of(&a.name))
                        .or_else(|| plain_name(name)),
                    self.factors.get(&(factor as *const _)).cloned(),
                ),
                TableFactor::Derived {
                    subquery, alias, ..
                } => (
                    alias.as_ref().map(|a| name_of(&a.name)),
                    Some(Relation::Derived(subquery)),
                ),
                TableFactor::NestedJoin {
                    table_with_joins, ..
                } => {
                    self.item_columns(table_with_joins, only, names);
                    continue;
                }
                _ => continue,
            };
            if only.is_some() && name.as_deref() != only {
                continue;
            }
            if let Some(relation) = relation {
                names.extend(self.columns(&relation).iter().cloned());
            }
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
